// Wiring: fetch /api/info, build the store, the views and the connection,
// and run one animation-frame loop that folds buffered readings in and
// redraws what changed (the list at most four times a second).

import "./style.css";
import { AdminPanel } from "./admin.js";
import { hubInfo, listDevices, useDashboardToken } from "./api.js";
import { ConnectionBar } from "./bar.js";
import { Connection, transportsFrom } from "./connection.js";
import { DeviceView } from "./device.js";
import { DeviceList } from "./devices.js";
import { byId, setText } from "./format.js";
import { Store } from "./store.js";

const LIST_EVERY_MS = 250;
const DEVICES_EVERY_MS = 30_000;
const NARROW = matchMedia("(max-width: 860px)");
const TOKEN_KEY = "telemetry-hub.dashboard-token";

async function waitForInfo() {
  for (;;) {
    try {
      return await hubInfo();
    } catch (error) {
      setText(byId("conn-state"), `hub unreachable (${error.message}); retrying`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function currentRoute() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { device: params.get("device"), range: params.get("range") || "live" };
}

async function main() {
  const info = await waitForInfo();
  const store = new Store(info);
  const transports = transportsFrom(location.search);

  // -- the frame loop -----------------------------------------------------
  let scheduled = false;
  let lastList = -Infinity;
  let listTimer = null;
  let unknownTimer = null;
  const wake = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(frame);
    }
  };
  store.wake = wake;

  const bar = new ConnectionBar(store);
  const list = new DeviceList(store, { onOpen: (id) => navigate(id, currentRoute().range) });
  const detail = new DeviceView(store, {
    onClose: () => navigate(null),
    onRange: (range) => navigate(detail.deviceId, range),
  });
  const admin = new AdminPanel(store, { transports, openDevice: () => detail.deviceId });

  let refreshing = null;
  const refreshDevices = () => {
    refreshing ??= listDevices()
      .then((devices) => store.loadDevices(devices))
      .catch(() => {}) // the next refresh or reconnect tries again
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  };

  function frame() {
    scheduled = false;
    const now = Date.now();
    store.apply(); // the open device's readings reach its charts through store.sinks
    detail.render(now);
    const slow = now - lastList >= LIST_EVERY_MS;
    bar.render(now, slow);
    if (slow) {
      lastList = now;
      list.render(now);
      detail.renderFacts(now);
      admin.render();
    } else if (listTimer === null) {
      listTimer = setTimeout(() => {
        listTimer = null;
        wake();
      }, LIST_EVERY_MS - (now - lastList));
    }
    if (store.unknown && unknownTimer === null) {
      // A device we have readings from but no group or attributes for yet.
      unknownTimer = setTimeout(() => {
        unknownTimer = null;
        refreshDevices();
      }, 1000);
    }
  }

  // Relative times, staleness and the charts' scrolling move with the clock.
  setInterval(wake, 1000);
  // A hidden tab gets no animation frames; keep folding readings in meanwhile.
  setInterval(() => {
    if (document.hidden) store.apply();
  }, 1000);
  setInterval(refreshDevices, DEVICES_EVERY_MS);

  // -- routing: #device=<id>&range=<range> ----------------------------------
  function navigate(device, range) {
    const query = new URLSearchParams();
    if (device) query.set("device", device);
    if (device && range && range !== "live") query.set("range", range);
    const hash = query.toString() ? `#${query}` : "";
    if (location.hash !== hash) {
      history.pushState(null, "", hash || location.pathname + location.search);
    }
    applyRoute(true);
  }

  function applyRoute(fromUser = false) {
    const { device, range } = currentRoute();
    const before = detail.deviceId;
    if (device) {
      detail.open(device, range);
      list.select(device);
      refreshDevices(); // fresh attributes for the device being opened
    } else {
      detail.close();
      list.select(null);
    }
    document.body.dataset.view = device ? "device" : "list";
    if (fromUser && NARROW.matches) {
      // Stacked layout: the list is hidden behind the device, so move focus too.
      if (device) byId("detail-title").focus();
      else if (before) list.rows.get(before)?.tr.focus();
    }
    wake();
  }
  window.addEventListener("popstate", () => applyRoute(true));

  // -- the connection -----------------------------------------------------
  const tokenForm = byId("token-form");
  const tokenInput = byId("dashboard-token");
  const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem(TOKEN_KEY) || "";
  tokenForm.hidden = !info.dashboard_token_required;
  tokenInput.value = token;
  useDashboardToken(token);
  const connection = new Connection(store, {
    transports,
    token,
    onConnect: refreshDevices,
    onGap: () => {
      detail.refill();
      refreshDevices();
    },
  });
  store.onReset = () => {
    detail.reset();
    refreshDevices();
  };
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
    useDashboardToken(tokenInput.value);
    connection.useToken(tokenInput.value);
  });

  // Read-only view of the page's state, for tests and for the curious.
  Object.defineProperty(window, "__hub", {
    value: Object.freeze({
      state: () => ({
        ...store.snapshot(),
        open: detail.snapshot(),
        bar: [...bar.shown],
        transports,
      }),
    }),
  });

  await refreshDevices();
  applyRoute();
}

main();

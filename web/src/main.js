// Wiring: fetch /api/info, build the store, the views and the connection,
// and run one animation-frame loop that folds buffered readings in and
// redraws what changed (the list's text at most four times a second, its
// rows as it scrolls). The page subscribes to the devices it shows: the
// list's rows and the open device.

import "./style.css";
import { AdminPanel } from "./admin.js";
import { deviceCounts, findDevice, hubInfo, useDashboardToken } from "./api.js";
import { ConnectionBar } from "./bar.js";
import { Connection, transportsFrom } from "./connection.js";
import { DeviceView } from "./device.js";
import { DeviceList } from "./devices.js";
import { byId, setText } from "./format.js";
import { newFetch } from "./pages.js";
import { Store } from "./store.js";

const LIST_EVERY_MS = 250;
const DEVICES_EVERY_MS = 30_000; // the rows on screen are described again
const COUNTS_EVERY_MS = 5000;
const PRESENCE_COUNTS_MS = 1000; // counts again this soon after a presence change
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
  const wake = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(frame);
    }
  };
  store.wake = wake;

  let connection = null;
  let rowIds = [];
  const opened = () => (detail.deviceId === null ? [] : [detail.deviceId]);
  const subscribe = (now = false) => connection?.want(new Set([...rowIds, ...opened()]), now);

  const bar = new ConnectionBar(store);
  const detail = new DeviceView(store, {
    onClose: () => navigate(null),
    onRange: (range) => navigate(detail.deviceId, range),
  });
  const list = new DeviceList(store, {
    onOpen: (id) => navigate(id, currentRoute().range),
    onRows: (ids) => {
      rowIds = ids;
      subscribe();
    },
    pinned: opened,
  });
  const admin = new AdminPanel(store, { transports, openDevice: () => detail.deviceId });

  // The open device's group, attributes and latest values, asked for alone:
  // the list need not have it (a link to one device of a large fleet).
  const describeOpen = async () => {
    const id = detail.deviceId;
    if (id === null) return;
    const number = newFetch();
    try {
      const device = await findDevice(id);
      if (device === null || detail.deviceId !== id) return;
      store.loadDevices([device], number);
      detail.renderFacts(Date.now()); // its charts, without waiting for the next tick
    } catch {
      // the next connect, gap or open tries again
    }
  };

  // Counts by status and group, for the filters and the heading: every few
  // seconds, and soon after a presence change. When they change, devices
  // came, went or changed status: the rows on screen are described again.
  let countsKey = null;
  let countsTimer = null;
  let countsDue = Infinity;
  const countsIn = (ms) => {
    if (Date.now() + ms >= countsDue) return;
    clearTimeout(countsTimer);
    countsDue = Date.now() + ms;
    countsTimer = setTimeout(loadCounts, ms);
  };
  async function loadCounts() {
    clearTimeout(countsTimer);
    countsDue = Infinity;
    if (!document.hidden) {
      try {
        const counts = await deviceCounts();
        list.setCounts(counts);
        const key = JSON.stringify(counts);
        if (countsKey !== null && key !== countsKey) list.refresh();
        countsKey = key;
        wake();
      } catch {
        // the next round tries again
      }
    }
    countsIn(COUNTS_EVERY_MS);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) countsIn(0);
  });

  function frame() {
    scheduled = false;
    const now = Date.now();
    store.apply(); // the open device's readings reach its charts through store.sinks
    detail.render(now);
    const slow = now - lastList >= LIST_EVERY_MS;
    bar.render(now, slow);
    list.render(now, slow); // rows placed as the list scrolls; their text when slow
    if (slow) {
      lastList = now;
      detail.renderFacts(now);
      admin.render();
    } else if (listTimer === null) {
      listTimer = setTimeout(() => {
        listTimer = null;
        wake();
      }, LIST_EVERY_MS - (now - lastList));
    }
  }

  // Relative times, staleness and the charts' scrolling move with the clock.
  setInterval(wake, 1000);
  // A hidden tab gets no animation frames; keep folding readings in meanwhile.
  setInterval(() => {
    if (document.hidden) store.apply();
  }, 1000);
  setInterval(() => list.refresh(), DEVICES_EVERY_MS);

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
      if (device !== before) describeOpen();
    } else {
      detail.close();
      list.select(null);
    }
    subscribe(true);
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
  connection = new Connection(store, {
    transports,
    token,
    onConnect: () => {
      list.refresh();
      describeOpen();
      countsIn(0);
    },
    onGap: () => {
      detail.refill();
      list.refresh();
      describeOpen();
    },
    // Devices subscribed to just now: what came before HEAD is fetched.
    onAdded: (added) => {
      list.refresh();
      if (added.includes(detail.deviceId)) {
        detail.refill();
        describeOpen();
      }
    },
    onPresence: () => countsIn(PRESENCE_COUNTS_MS),
  });
  store.onReset = () => {
    detail.reset();
    list.reload();
    describeOpen();
    countsIn(0);
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
        list: list.snapshot(),
        subscribed: [...connection.subscribed].sort(),
        bar: [...bar.shown],
        transports,
      }),
    }),
  });

  loadCounts();
  applyRoute();
}

main();

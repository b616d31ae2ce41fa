// The dashboard is built into the hub's package (hub/static), which the hub
// serves at `/` and `/assets/<name>`; nothing is fetched from a CDN at run time.
import { defineConfig } from "vite";

const hub = process.env.HUB_URL || "http://127.0.0.1:8080";

export default defineConfig({
  base: "/",
  build: {
    outDir: "../hub/static",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2020",
    chunkSizeWarningLimit: 300,
  },
  // `npm run dev --prefix web` serves the page with hot reload in front of a
  // running hub (HUB_URL, default http://127.0.0.1:8080).
  server: {
    proxy: {
      "/api": hub,
      "/socket.io": { target: hub, ws: true },
    },
  },
});

// Two pages: the PC debug page (served by the relay at /) and the device page (at /d/{room}).
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    target: "es2022",
    rollupOptions: {
      input: { pc: "index.html", device: "device.html" },
    },
  },
});

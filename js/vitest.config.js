// @ts-check
import { defineConfig } from "vitest/config";

// Unit tests of the widget front end (js/test), in a DOM from happy-dom; no browser.
export default defineConfig({
  test: {
    environment: "happy-dom",
    include: ["test/**/*.test.js"],
  },
});

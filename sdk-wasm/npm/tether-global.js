// Loaded by tether.js (the classic-script loader) as a module script from the same build:
// hands it the SDK's module. Pages import index.js instead.
import * as sdk from "./index.js";

dispatchEvent(new CustomEvent("tether-sdk", { detail: { url: import.meta.url, sdk } }));

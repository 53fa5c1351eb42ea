/* tether-sdk's classic-script loader, for pages with no bundler and no module script of their
 * own (the embed vConsole and eruda users know):
 *
 *   <script src="https://RELAY/sdk/tether.js"></script>
 *   <script>Tether.connectDevice({ room: "news-debug", secret: "dk.…" })</script>
 *
 * It defines `window.Tether` with the package's functions (connectDevice, connectPc,
 * subscribeAlarms: the same ones, returning the same Promises, `url` defaulting to the relay
 * this file came from), loads the SDK itself on first use, from the relay's `/sdk/@BUILD/`
 * (the relay writes its build id below), and can connect on its own:
 * - `data-room` and `data-secret` (and `data-name`, `data-bridge`, `data-inspect`) on its
 *   <script> tag: joins that room as a device when the page loads;
 * - `data-from-url` on its <script> tag: joins the room named in the page's own address
 *   (`#tether_room=R&tether_key=dk.…`, what the PC page's QR code appends to the app's page),
 *   after the phone's user said yes (a link is anyone's to make), and takes them out of the
 *   address.
 * `Tether.auto` is that Promise (null when it does not connect on its own).
 *
 * Written in the oldest JavaScript on purpose: in a webview that cannot run the SDK it must
 * still parse, to say why (`Tether.supported`, `Tether.problem`, and every function rejects
 * with `code: "unsupported"`). */
(function () {
  "use strict";
  if (window.Tether && window.Tether.load) return; // loaded twice: keep the first
  var BUILD = "__TETHER_BUILD__";
  var script = document.currentScript;
  var src = (script && script.src) || "";
  // https://relay/sdk/ (also when this file was loaded from a build's path, /sdk/@BUILD/).
  var base = src.slice(0, src.lastIndexOf("/") + 1).replace(/@[^/]+\/$/, "");
  var origin = base.replace(/\/sdk\/$/, "/");
  var defaultUrl = origin.replace(/^http/, "ws") + "ws";
  // Served by the relay, BUILD is its build id and every file comes from that build's path.
  var root = BUILD.indexOf("__") === 0 ? base : base + "@" + BUILD + "/";

  function fail(code, message) {
    var e = new Error(message);
    e.code = code;
    return e;
  }

  var NEEDS = " (Tether needs iOS 15+ or Android System WebView 96+)";
  // A module using what the SDK's wasm uses: externref (reference types), memory.copy (bulk
  // memory), a saturating float-to-int and a sign extension. Engines that validate it also
  // parse the SDK's JavaScript (ES2021).
  var PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 10, 29, 1, 27, 0,
    208, 111, 26, 65, 0, 65, 0, 65, 0, 252, 10, 0, 0, 67, 0, 0, 0, 0, 252, 0, 26, 65, 0, 192, 26, 11];

  function problem() {
    if (!src) return "tether.js must be loaded by its own <script src> tag";
    if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") {
      return "this webview has no WebAssembly (is it turned off in the app?)" + NEEDS;
    }
    try {
      if (!WebAssembly.validate(new Uint8Array(PROBE))) return "this webview's WebAssembly is too old" + NEEDS;
    } catch (e) {
      return "this webview's WebAssembly is too old" + NEEDS;
    }
    if (!("noModule" in document.createElement("script"))) return "this webview cannot load JavaScript modules" + NEEDS;
    if (typeof WebSocket !== "function") return "this webview has no WebSocket";
    return null;
  }

  var why = problem();
  var loading = null;

  /** Loads the SDK (once): a module script from the relay, which hands the module over. */
  function load() {
    if (why) return Promise.reject(fail("unsupported", why));
    if (loading) return loading;
    loading = new Promise(function (resolve, reject) {
      var url = root + "tether-global.js";
      var tag = document.createElement("script");
      var timer;
      function settle() {
        window.removeEventListener("tether-sdk", done);
        window.removeEventListener("error", broken, true);
        clearTimeout(timer);
      }
      function done(e) {
        if (e.detail && e.detail.url === url) {
          settle();
          resolve(e.detail.sdk);
        }
      }
      function failed(code, message) {
        settle();
        loading = null; // the next call tries again
        reject(fail(code, message));
      }
      // A module that fails to run (a syntax this webview does not know) fires no `error` on
      // its tag, but on the window, with its file's address.
      function broken(e) {
        if (e.filename && e.filename.indexOf(root) === 0) failed("unsupported", "the SDK does not run in this webview: " + e.message + NEEDS);
      }
      window.addEventListener("tether-sdk", done);
      window.addEventListener("error", broken, true);
      timer = setTimeout(function () {
        failed("unreachable", "the SDK did not load from " + url + " within 30 s");
      }, 30000);
      tag.type = "module";
      tag.src = url;
      tag.onerror = function () {
        failed("unreachable", "could not load " + url + ": the relay cannot be reached, or the page's Content-Security-Policy does not allow it");
      };
      (document.head || document.documentElement).appendChild(tag);
    });
    return loading;
  }

  function withUrl(options) {
    var o = {};
    for (var k in options || {}) if (Object.prototype.hasOwnProperty.call(options, k)) o[k] = options[k];
    if (!o.url) o.url = defaultUrl;
    return o;
  }

  function connectDevice(options) {
    return load().then(function (sdk) { return sdk.connectDevice(withUrl(options)); });
  }

  /** The room and device key in the page's address, taken out of it; null when there are none. */
  function fromAddress() {
    var found = {};
    var strip = function (part) {
      return part.replace(/(^|[?#&])tether_(room|key)=([^&#]*)/g, function (all, lead, name, value) {
        try {
          found[name] = decodeURIComponent(value.replace(/\+/g, " "));
        } catch (e) {
          found[name] = "";
        }
        return lead;
      }).replace(/[?#&]+$/, "").replace(/([?#])&+/, "$1");
    };
    var search = strip(location.search);
    var hash = strip(location.hash);
    if (found.room === undefined && found.key === undefined) return null;
    try {
      history.replaceState(history.state, "", location.pathname + search + hash);
    } catch (e) { /* an address that cannot be rewritten keeps them */ }
    return { room: found.room || "", key: found.key || "" };
  }

  /** Joins the room named in the page's address, once the phone's user said yes. */
  function connectFromUrl(options) {
    var o = withUrl(options);
    var link = fromAddress();
    if (!link) return Promise.resolve(null);
    if (link.key.indexOf("dk.") !== 0) {
      return Promise.reject(fail("bad_request", "the address holds no device key (tether_key=dk.…): not joining"));
    }
    // The room is the link's, so anyone's: shown in the question, it must not be able to
    // pass for the question's own words (quotes, line breaks, invisible or right-to-left marks).
    if (!link.room || link.room.length > 64 || /["\u201c\u201d\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/.test(link.room)) {
      return Promise.reject(fail("bad_request", "the address names a room this page will not ask about (empty, over 64 characters, or with quotes, line breaks or invisible characters): not joining"));
    }
    var host = origin.replace(/^\w+:\/\//, "").replace(/\/$/, "");
    var info = { room: link.room, relay: host, inspect: !!o.inspect };
    var ask = typeof o.ask === "function" ? o.ask : function (i) {
      var text = "Tether relay " + i.relay + ": let the computer in its debug room \u201c" + i.room +
        "\u201d make requests and call the app from this page, as you" +
        (i.inspect ? ", and see what this page logs, loads and stores" : "") + "?";
      try {
        return window.confirm(text);
      } catch (e) {
        return false; // no dialogs in this webview: no
      }
    };
    return Promise.resolve(ask(info)).then(function (yes) {
      if (yes !== true) throw fail("declined", "the phone's user did not allow joining room \u201c" + link.room + "\u201d");
      delete o.ask;
      o.room = link.room;
      o.secret = link.key;
      return connectDevice(o);
    });
  }

  var Tether = {
    /** The relay's build of the SDK. */
    build: BUILD.indexOf("__") === 0 ? null : BUILD,
    /** The relay this file came from (`https://host/`); the default `url` is its `/ws`. */
    relay: origin,
    supported: !why,
    problem: why,
    load: load,
    connectDevice: connectDevice,
    connectPc: function (options) {
      return load().then(function (sdk) { return sdk.connectPc(withUrl(options)); });
    },
    subscribeAlarms: function (options, cb) {
      return load().then(function (sdk) { return sdk.subscribeAlarms(withUrl(options), cb); });
    },
    connectFromUrl: connectFromUrl,
    auto: null
  };
  window.Tether = Tether;

  var attr = function (name) { return script ? script.getAttribute(name) : null; };
  if (attr("data-room") && attr("data-secret")) {
    var opts = { room: attr("data-room"), secret: attr("data-secret") };
    if (attr("data-name")) opts.name = attr("data-name");
    if (attr("data-bridge")) opts.bridge = attr("data-bridge");
    if (attr("data-inspect") !== null) opts.inspect = true;
    Tether.auto = connectDevice(opts);
  } else if (attr("data-from-url") !== null) {
    Tether.auto = connectFromUrl({ inspect: attr("data-inspect") !== null ? true : undefined });
  }
  if (why && (Tether.auto || attr("data-from-url") !== null)) console.error("[tether] " + why);
  if (Tether.auto) {
    Tether.auto.then(null, function (e) { console.error("[tether] " + (e && e.message)); });
  }
})();

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
  var base = src.slice(0, src.lastIndexOf("/") + 1); // https://relay/sdk/
  var origin = base.replace(/\/sdk\/$/, "/");
  var defaultUrl = origin.replace(/^http/, "ws") + "ws";
  // Served by the relay, BUILD is its build id and every file comes from that build's path.
  var root = BUILD.indexOf("__") === 0 ? base : base + "@" + BUILD + "/";

  function fail(code, message) {
    var e = new Error(message);
    e.code = code;
    return e;
  }

  function problem() {
    if (!src) return "tether.js must be loaded by its own <script src> tag";
    if (typeof Promise !== "function") return "this webview has no Promise (Tether needs iOS 11.3+ or Android WebView 61+)";
    if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
      return "this webview has no WebAssembly (Tether needs iOS 11.3+ or Android WebView 61+; is it disabled by the app?)";
    }
    if (!("noModule" in document.createElement("script"))) {
      return "this webview cannot load JavaScript modules (Tether needs iOS 11.3+ or Android WebView 61+)";
    }
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
      function done(e) {
        if (e.detail && e.detail.url === url) {
          window.removeEventListener("tether-sdk", done);
          resolve(e.detail.sdk);
        }
      }
      window.addEventListener("tether-sdk", done);
      tag.type = "module";
      tag.src = url;
      tag.onerror = function () {
        window.removeEventListener("tether-sdk", done);
        loading = null; // the next call tries again
        reject(fail("unreachable", "could not load " + url + ": the relay cannot be reached, or the page's Content-Security-Policy does not allow it"));
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
    if (!found.room || !found.key) return null;
    try {
      history.replaceState(history.state, "", location.pathname + search + hash);
    } catch (e) { /* an address that cannot be rewritten keeps them */ }
    return { room: found.room, key: found.key };
  }

  /** Joins the room named in the page's address, once the phone's user said yes. */
  function connectFromUrl(options) {
    var o = withUrl(options);
    var link = fromAddress();
    if (!link) return Promise.resolve(null);
    if (link.key.indexOf("dk.") !== 0) {
      return Promise.reject(fail("bad_request", "the address holds no device key (tether_key=dk.…): not joining"));
    }
    var host = origin.replace(/^\w+:\/\//, "").replace(/\/$/, "");
    var info = { room: link.room, relay: host };
    var ask = typeof o.ask === "function" ? o.ask : function (i) {
      var text = "Let the computer in the Tether debug room \u201c" + i.room + "\u201d (relay " + i.relay +
        ") make requests and call the app from this page, as you?";
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

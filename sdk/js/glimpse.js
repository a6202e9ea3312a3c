// glimpse-sdk: the drop-in tag, a classic script.
// <script src="https://EDGE/sdk/glimpse.js" data-endpoint="https://EDGE/v1/impressions" async></script>
// Starts a tracker on every [data-ad-id] element; it becomes window.glimpse
// and `glimpse:ready` fires on window. data-* attributes are the options.
// The build names the content-hashed module and wasm here, and the wasm is
// preloaded, so both download at once: one round trip after the tag.
(function () {
  var script = document.currentScript;
  if (!script || !script.src) return;
  var at = function (name) { return new URL(name, script.src).href; };
  var preload = document.createElement("link");
  preload.rel = "preload";
  preload.as = "fetch";
  // As the module's fetch() asks for it (CORS, no credentials across
  // origins), so the browser uses the preloaded response.
  preload.crossOrigin = "anonymous";
  preload.href = at("glimpse_sdk_bg.wasm");
  document.head.appendChild(preload);
  var numeric = /^(flushIntervalMs|maxBatch|minVisibleRatio|minVisibleMs|largeAdPixels|largeAdRatio)$/;
  var options = {};
  for (var key in script.dataset) {
    var value = script.dataset[key];
    options[key] = numeric.test(key) ? Number(value) : value;
  }
  import(at("index.js"))
    .then(function (m) { return m.start(options); })
    .then(function (tracker) {
      window.glimpse = tracker;
      window.dispatchEvent(new Event("glimpse:ready"));
    })
    .catch(function (e) { console.error(e); });
})();

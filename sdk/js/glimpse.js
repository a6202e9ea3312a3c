// glimpse-sdk: the drop-in tag, a classic script.
// <script src="https://EDGE/sdk/glimpse.js" data-endpoint="https://EDGE/v1/impressions" async></script>
// Starts a tracker on every [data-ad-id] element; it becomes window.glimpse
// and `glimpse:ready` fires on window. data-* attributes are the options.
(function () {
  var script = document.currentScript;
  if (!script || !script.src) return;
  var numeric = /^(flushIntervalMs|maxBatch|minVisibleRatio|minVisibleMs|largeAdPixels|largeAdRatio)$/;
  var options = {};
  for (var key in script.dataset) {
    var value = script.dataset[key];
    options[key] = numeric.test(key) ? Number(value) : value;
  }
  import(new URL("index.js", script.src).href)
    .then(function (m) { return m.start(options); })
    .then(function (tracker) {
      window.glimpse = tracker;
      window.dispatchEvent(new Event("glimpse:ready"));
    })
    .catch(function (e) { console.error(e); });
})();

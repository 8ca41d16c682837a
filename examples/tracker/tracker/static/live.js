// tracker: offer to reload a page when what it shows changed elsewhere.
// The page works without this script; it only adds the banner.
(function () {
  "use strict";
  var node = document.getElementById("live-config");
  if (!node || !window.KaraffeEvents) return;
  var config = JSON.parse(node.textContent);
  var stream = window.KaraffeEvents.connect(config);
  var banner = null;
  function changed(event) {
    if (banner) return;
    banner = document.createElement("div");
    banner.className = "flash info live-banner";
    banner.setAttribute("role", "status");
    banner.textContent = "This page changed. ";
    var link = document.createElement("a");
    link.href = location.href;
    link.textContent = "Reload";
    banner.appendChild(link);
    var main = document.querySelector("main");
    main.insertBefore(banner, main.firstChild);
  }
  stream.on("*", changed);
  stream.onReset(changed);
  // No stream served (a Redis broker without a relay wired in): say so once,
  // quietly, instead of retrying forever.
  stream.onStatus(function (status) {
    if (status !== "off" || document.querySelector(".live-off")) return;
    var notice = document.createElement("p");
    notice.className = "live-off";
    notice.setAttribute("role", "status");
    notice.textContent = "Live updates are off: reload to see changes.";
    var main = document.querySelector("main");
    main.appendChild(notice);
  });
})();

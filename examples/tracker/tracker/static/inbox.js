// tracker: keep the header's unread count live. The server publishes the
// viewer's count on their own channel (user:<id>) after every change to it;
// the token is renewed from /notifications/token before it runs out.
(function () {
  "use strict";
  var node = document.getElementById("inbox-config");
  var badge = document.getElementById("unread-count");
  if (!node || !badge || !window.KaraffeEvents) return;
  var config = JSON.parse(node.textContent);
  var renewUrl = config.renew;
  config.renew = function () {
    return fetch(renewUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (body) { return body.token; });
  };
  function show(unread) {
    badge.textContent = String(unread);
    badge.setAttribute("aria-label", unread + " unread");
    badge.hidden = unread === 0;
  }
  var stream = window.KaraffeEvents.connect(config);
  stream.on("notifications.unread", function (event) { show(event.data.unread); });
})();

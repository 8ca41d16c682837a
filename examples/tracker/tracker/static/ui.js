// tracker: small progressive enhancements. Every page works without them.
(function () {
  "use strict";

  // Markdown Preview in place: the server renders (POST /api/v1/markdown, the
  // same code the pages use); without this script the Preview button submits
  // the form and the page comes back with the preview.
  function preview(field, button) {
    var textarea = field.querySelector("textarea");
    var target = field.querySelector(".md-preview");
    var form = field.closest("form");
    var csrf = form && form.querySelector("input[name=csrf_token]");
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (csrf) headers["X-CSRFToken"] = csrf.value;
    button.disabled = true;
    fetch(field.getAttribute("data-preview-url"), {
      method: "POST",
      headers: headers,
      credentials: "same-origin",
      body: JSON.stringify({ text: textarea.value, org: field.getAttribute("data-org") || undefined }),
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        target.innerHTML = data.html || '<p class="muted">Nothing to preview.</p>';
      })
      .catch(function () {
        target.textContent = "The preview could not be loaded.";
      })
      .finally(function () {
        target.hidden = false;
        button.disabled = false;
      });
  }

  // Dates: the server says "3 hours ago" with the UTC time in the tooltip;
  // the reader's own time zone is added in front of it.
  function localTimes(root) {
    if (!window.Intl) return;
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short",
    });
    var nodes = root.querySelectorAll("time[datetime][title]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var when = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(when.getTime()) || new Date().getTimezoneOffset() === 0) continue;
      nodes[i].setAttribute("data-local", "");
      nodes[i].title = format.format(when) + " · " + nodes[i].title;
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".md-preview-button");
    if (!button || !window.fetch) return;
    var form = button.closest("form");
    var field = form && form.querySelector(".md-field");
    if (!field) return;
    event.preventDefault();
    preview(field, button);
  });

  try {
    localTimes(document);
  } catch (error) {
    // An old browser's Intl: the UTC tooltip stays.
  }
})();

// tracker: @mention autocomplete in the Markdown text boxes. Typing "@" and
// the start of a handle or a name lists the organization's members (asked
// from the URL in <meta name="tracker-mentions">); ArrowDown/ArrowUp move,
// Enter or Tab inserts the handle, Escape closes. Without this script,
// typing @handle by hand works the same.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="tracker-mentions"]');
  if (!meta) return;
  var url = meta.getAttribute("content");
  var TRIGGER = /(^|[^a-z0-9._+-])@([a-z0-9._-]{0,60})$/i;
  var count = 0;

  function enhance(area) {
    var id = "mentions-" + (++count);
    var list = document.createElement("ul");
    list.className = "mention-list";
    list.id = id;
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Members to mention");
    list.hidden = true;
    area.parentNode.insertBefore(list, area.nextSibling);
    area.setAttribute("aria-autocomplete", "list");
    area.setAttribute("aria-controls", id);
    area.setAttribute("aria-expanded", "false");
    var items = [];
    var active = -1;
    var query = null;
    var asked = 0;

    function close() {
      list.hidden = true;
      list.textContent = "";
      items = [];
      active = -1;
      query = null;
      area.setAttribute("aria-expanded", "false");
      area.removeAttribute("aria-activedescendant");
    }

    function highlight(i) {
      active = i;
      for (var k = 0; k < list.children.length; k++) {
        list.children[k].setAttribute("aria-selected", k === i ? "true" : "false");
      }
      if (i >= 0) area.setAttribute("aria-activedescendant", id + "-" + i);
    }

    function choose(i) {
      var member = items[i];
      if (!member || query === null) return;
      var end = area.selectionStart;
      var start = end - query.length - 1;
      var before = area.value.slice(0, start);
      var after = area.value.slice(end);
      var insert = "@" + member.handle + " ";
      area.value = before + insert + after;
      var caret = before.length + insert.length;
      area.setSelectionRange(caret, caret);
      close();
      area.focus();
    }

    function render(members) {
      list.textContent = "";
      items = members;
      if (!members.length) { close(); return; }
      members.forEach(function (m, i) {
        var li = document.createElement("li");
        li.id = id + "-" + i;
        li.setAttribute("role", "option");
        var handle = document.createElement("strong");
        handle.textContent = "@" + m.handle;
        var name = document.createElement("span");
        name.className = "muted";
        name.textContent = " " + m.name;
        li.appendChild(handle);
        li.appendChild(name);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      area.setAttribute("aria-expanded", "true");
      highlight(0);
    }

    function lookup() {
      var match = TRIGGER.exec(area.value.slice(0, area.selectionStart));
      if (!match) { close(); return; }
      query = match[2];
      var mine = ++asked;
      fetch(url + "?q=" + encodeURIComponent(query), {
        credentials: "same-origin", headers: { Accept: "application/json" },
      })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (members) { if (mine === asked && query !== null) render(members); })
        .catch(close);
    }

    area.addEventListener("input", lookup);
    area.addEventListener("blur", function () { setTimeout(close, 100); });
    area.addEventListener("keydown", function (e) {
      if (list.hidden || !items.length) return;
      if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % items.length); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight((active - 1 + items.length) % items.length); }
      else if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); choose(active); }
      else if (e.key === "Escape") { e.preventDefault(); close(); }
    });
  }

  document.querySelectorAll(".md-field textarea").forEach(enhance);
})();

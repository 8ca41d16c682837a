// tracker: keep a page live, in place. Events name what changed (ids only);
// the server renders each fragment for this viewer with the page's own
// templates, and this script swaps it in (karaffe-events.js's fetchFragment,
// swap, swapById and refresher). See docs/tracker.md, "Live pages".
// Every page of a logged-in viewer has it, with one stream for the header's
// unread count (the viewer's channel, user:<id>) and whatever the page shows.
// The page works without this script.
(function () {
  "use strict";
  var node = document.getElementById("live-config");
  var K = window.KaraffeEvents;
  if (!node || !K) return;
  var config = JSON.parse(node.textContent);
  var page = config.page || {};
  var renewUrl = config.renew;
  // A fresh token before the current one expires (the relay says
  // token-expiring), so the stream outlives EVENTS_TOKEN_MAX_AGE.
  config.renew = function () {
    return fetch(renewUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("token renewal: " + response.status);
        return response.json();
      })
      .then(function (body) {
        window.liveRenewals = (window.liveRenewals || 0) + 1;
        return body.token;
      });
  };
  var stream = K.connect(config);
  window.liveStream = stream;

  function notice(className, text, link) {
    if (document.querySelector("." + className)) return;
    var banner = document.createElement("div");
    banner.className = "flash info " + className;
    banner.setAttribute("role", "status");
    banner.textContent = text;
    if (link) {
      var a = document.createElement("a");
      a.href = location.href;
      a.textContent = link;
      banner.appendChild(a);
    }
    var main = document.querySelector("main");
    main.insertBefore(banner, main.firstChild);
  }

  function highlight(el) {
    el.classList.add("live-changed");
    setTimeout(function () { el.classList.remove("live-changed"); }, 2000);
  }

  // -- the header's unread count --------------------------------------------------------

  var badge = document.getElementById("unread-count");
  function showUnread(unread) {
    if (!badge) return;
    badge.textContent = String(unread);
    badge.setAttribute("aria-label", unread + " unread");
    badge.hidden = unread === 0;
  }
  stream.on("notifications.unread", function (event) { showUnread(event.data.unread); });
  function recountUnread() {
    if (!config.unread) return;
    fetch(config.unread, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("unread: " + response.status);
        return response.json();
      })
      .then(function (body) { showUnread(body.unread); }, function () { /* next event */ });
  }

  var livePage = Boolean(page.row || page.parts);
  // The history could not be continued (Redis lost it): what changed
  // meanwhile is unknown, so offer a reload rather than guess (the count
  // is simply asked for again).
  stream.onReset(function (channel) {
    if (/^user:/.test(channel || "")) return recountUnread();
    if (livePage) notice("live-banner", "This page may have changed. ", "Reload");
  });
  // No stream served (a Redis broker without a relay wired in): say so once.
  stream.onStatus(function (status) {
    if (status !== "off" || !livePage || document.querySelector(".live-off")) return;
    var off = document.createElement("p");
    off.className = "live-off";
    off.setAttribute("role", "status");
    off.textContent = "Live updates are off: reload to see changes.";
    document.querySelector("main").appendChild(off);
  });

  // -- the issue list ----------------------------------------------------------------

  function issueList() {
    var list = document.querySelector("#issue-list .issues");
    if (!list) return;
    var descending = list.getAttribute("data-order") !== "asc";
    // Only a list of the newest first (by id, no search) knows where a new
    // issue goes; on any other, new issues wait behind the control, whose
    // click reloads the list.
    var byId = list.getAttribute("data-sort") === "id";
    var guessable = descending && byId && !list.hasAttribute("data-search");
    var held = {}; // rows waiting behind the "N new issues" control, by id
    var control = null;

    function keyOf(el) {
      var key = el.getAttribute("data-key");
      return /^[0-9]+$/.test(key) ? Number(key) : key;
    }
    function sortsBefore(a, b) { return descending ? a > b : a < b; }

    // Where a row goes: {ref} to insert before (null: at the end), or null
    // when it belongs to another page of the list.
    function place(key) {
      var rows = list.children;
      for (var i = 0; i < rows.length; i++) {
        if (sortsBefore(key, keyOf(rows[i]))) {
          if (i === 0 && document.querySelector("a[rel=prev]")) return null;
          return { ref: rows[i] };
        }
      }
      if (rows.length && document.querySelector("a[rel=next]")) return null;
      return { ref: null };
    }

    // Inserting there would move what the reader is looking at: the reader
    // has scrolled, or the row sorts above the viewport. Below the viewport,
    // or on a page read from its top, it goes in at once.
    function movesView(where) {
      var y = where.ref ? where.ref.getBoundingClientRect().top : list.getBoundingClientRect().bottom;
      if (y >= window.innerHeight) return false;
      return y < 0 || window.scrollY > 0;
    }

    function insert(el) {
      var where = place(keyOf(el));
      if (!where) return;
      var empty = document.getElementById("no-issues");
      if (empty) empty.remove();
      list.insertBefore(el, where.ref);
      highlight(el);
    }

    function showHeld() {
      var count = Object.keys(held).length;
      if (!count) {
        if (control) control.remove();
        control = null;
        return;
      }
      if (!control) {
        control = document.createElement("button");
        control.type = "button";
        control.className = "live-new";
        control.addEventListener("click", function () {
          if (!guessable) return window.location.reload();
          var rows = Object.keys(held).map(function (id) { return held[id]; });
          held = {};
          rows.forEach(insert);
          showHeld();
          document.getElementById("issue-list").scrollIntoView({ block: "start" });
        });
        list.parentNode.insertBefore(control, list);
      }
      control.textContent = count === 1 ? "1 new issue" : count + " new issues";
    }

    var refresh = K.refresher(function (id) {
      var url = page.row + (page.row.indexOf("?") >= 0 ? "&" : "?") + "id=" + encodeURIComponent(id);
      return K.fetchFragment(url).then(function (got) {
        var current = document.getElementById("issue-" + id);
        var row = got.fragment && got.fragment.firstElementChild;
        var matches = row && row.getAttribute("data-match") !== "0";
        if (held[id]) {
          if (matches) held[id] = row;
          else delete held[id];
          showHeld();
          return;
        }
        if (current) {
          // In place, even when it no longer matches the filters (it shows
          // "Closed", dimmed): rows never vanish under the reader's eyes,
          // except deleted ones.
          if (row) {
            var changed = row.textContent !== current.textContent;
            current.replaceWith(row);
            if (changed) highlight(row);
          } else {
            current.remove();
          }
          return;
        }
        if (!matches) return;
        if (!guessable) {
          held[id] = row;
          showHeld();
          return;
        }
        var where = place(keyOf(row));
        if (!where) return;
        if (movesView(where)) {
          held[id] = row;
          showHeld();
        } else {
          insert(row);
        }
      });
    });
    // Only what this page shows, or might show now, is fetched: a list
    // ordered by id knows from the event alone whether an issue falls on it;
    // on any other, only a created issue is new to it.
    ["issue.created", "issue.updated", "issue.deleted"].forEach(function (type) {
      stream.on(type, function (event) {
        var id = String(event.data.id);
        if (!document.getElementById("issue-" + id) && !held[id]) {
          if (type === "issue.deleted" || (byId && !place(Number(id)))) return;
          if (!guessable && type !== "issue.created") return;
        }
        refresh(id);
      });
    });
    // A member renamed: the rows they are the assignee of.
    stream.on("member.updated", function (event) {
      var rows = list.querySelectorAll("li[data-assignee='" + Number(event.data.id) + "']");
      for (var i = 0; i < rows.length; i++) refresh(rows[i].id.slice("issue-".length));
    });
    // A label renamed, recoloured or deleted: the rows that show it.
    ["label.updated", "label.deleted"].forEach(function (type) {
      stream.on(type, function (event) {
        var chips = list.querySelectorAll(".label-" + Number(event.data.id));
        for (var i = 0; i < chips.length; i++) {
          var row = chips[i].closest("li[id^='issue-']");
          if (row) refresh(row.id.slice("issue-".length));
        }
        if (type === "label.updated") restyleLabels();
      });
    });
  }

  // Labels are coloured by /labels.css (no inline style under the content
  // security policy): a recoloured label loads it again.
  function restyleLabels() {
    var link = document.querySelector("link[rel=stylesheet][href*='labels.css']");
    if (!link) return;
    var fresh = link.cloneNode();
    fresh.href = link.href.split("?")[0] + "?v=" + Date.now();
    fresh.addEventListener("load", function () { link.remove(); });
    link.parentNode.insertBefore(fresh, link.nextSibling);
  }

  // -- the issue page ----------------------------------------------------------------

  function issuePage() {
    if (!page.parts) return;
    var deleted = false;
    var timer = null;
    var tab = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);

    function gone() {
      if (deleted) return;
      deleted = true;
      if (timer) clearInterval(timer);
      leave();
      notice("live-deleted", "This issue was deleted.");
      var controls = document.querySelectorAll("main form button, main textarea, #issue-head a.button");
      for (var i = 0; i < controls.length; i++) {
        controls[i].setAttribute("disabled", "");
        controls[i].setAttribute("aria-disabled", "true");
      }
    }

    var refreshParts = K.refresher(function () {
      return K.fetchFragment(page.parts).then(function (got) {
        if (!got.fragment) return gone();
        var before = {};
        Array.prototype.forEach.call(got.fragment.children, function (el) {
          var shown = el.id && document.getElementById(el.id);
          if (shown) before[el.id] = shown.textContent;
        });
        K.swapById(got.fragment).forEach(function (el) {
          if (before[el.id] !== el.textContent) highlight(el);
        });
        return undefined;
      });
    });
    var refreshComment = K.refresher(function (id) {
      return K.fetchFragment(page.comment + "?id=" + encodeURIComponent(id)).then(function (got) {
        var current = document.getElementById("comment-" + id);
        var comment = got.fragment && got.fragment.firstElementChild;
        if (!comment) {
          if (current) current.remove();
          return;
        }
        if (current) {
          current.replaceWith(comment);
        } else {
          var none = document.getElementById("no-comments");
          if (none) none.remove();
          intoTimeline(comment);
        }
        highlight(comment);
      });
    });
    // Another change ("Bob closed the issue"): its entry, once.
    var refreshEntry = K.refresher(function (id) {
      if (document.getElementById("activity-" + id)) return undefined;
      return K.fetchFragment(page.entry + "?id=" + encodeURIComponent(id)).then(function (got) {
        var entry = got.fragment && got.fragment.firstElementChild;
        if (!entry || document.getElementById(entry.id)) return;
        intoTimeline(entry);
        highlight(entry);
      });
    });
    // Entries go where the server's order puts them (data-order), whatever
    // order their fetches come back in.
    function intoTimeline(el) {
      var timeline = document.getElementById("comments");
      var key = el.getAttribute("data-order") || "";
      var entries = timeline.children;
      var before = null;
      for (var i = entries.length - 1; i >= 0; i--) {
        if ((entries[i].getAttribute("data-order") || "") <= key) break;
        before = entries[i];
      }
      timeline.insertBefore(el, before);
    }
    stream.on("issue.updated", function (event) {
      refreshParts("parts");
      // Closed or reopened with a comment: one event names both.
      if (event.data.comment_id) refreshComment(String(event.data.comment_id));
    });
    stream.on("activity.created", function (event) { refreshEntry(String(event.data.id)); });
    stream.on("issue.deleted", gone);
    stream.on("comment.created", function (event) { refreshComment(String(event.data.id)); });
    // Any change of a comment ("comment.updated" once comments can be
    // edited) shows the comment as the server renders it now, or removes it.
    ["comment.updated", "comment.deleted"].forEach(function (type) {
      stream.on(type, function (event) { refreshComment(String(event.data.id)); });
    });

    // Presence: a heartbeat every third of the server's lifetime of an
    // entry, and whenever who is here changes; the answer is the line.
    function form(leaving) {
      var data = new FormData();
      data.append("tab", tab);
      if (leaving) data.append("leave", "1");
      if (page.csrf) data.append("csrf_token", page.csrf);
      return data;
    }
    var beat = K.refresher(function () {
      if (deleted) return undefined;
      return fetch(page.presence, { method: "POST", body: form(false), credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok || response.redirected) return undefined;
          return response.text().then(function (html) {
            K.swap(document.getElementById("issue-presence"), html);
          });
        });
    });
    function leave() {
      if (navigator.sendBeacon) navigator.sendBeacon(page.presence, form(true));
    }
    beat("presence");
    timer = setInterval(function () { beat("presence"); }, page.heartbeat * 1000);
    stream.on("presence", function () { beat("presence"); });
    // A form of this page (close, comment) comes back to this issue: no
    // goodbye then, or the others would see the viewer leave and come back.
    var issueUrl = page.parts.replace(/\/parts$/, "/");
    var returning = false;
    document.addEventListener("submit", function (event) {
      var action = event.target.getAttribute("action") || "";
      returning = action.indexOf(issueUrl) === 0 || action === issueUrl.slice(0, -1);
    });
    window.addEventListener("pagehide", function () {
      clearInterval(timer);
      if (!deleted && !returning) leave();
    });
  }

  issueList();
  issuePage();
})();

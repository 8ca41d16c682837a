/*
 * karaffe-events.js: the browser side of karaffe's live events. No dependencies.
 *
 *   const stream = KaraffeEvents.connect({url, channels, token, cursor, renew, share});
 *   stream.on("issue.created", (event) => ...);   // event = {id, channel, type, data}
 *   stream.onReset((channel) => location.reload());
 *   stream.onStatus((status) => ...);   // connecting, open, or off (the URL answered 404)
 *
 * Pages that update in place let the server render HTML and swap it in:
 *
 *   const refresh = KaraffeEvents.refresher((id) =>
 *     KaraffeEvents.fetchFragment("/issues/" + id + "/row").then((got) =>
 *       KaraffeEvents.swap(document.getElementById("issue-" + id), got.fragment)));
 *   stream.on("issue.updated", (event) => refresh(event.data.id));
 *
 * One tab per site (the leader, elected with Web Locks or a localStorage lease)
 * holds the EventSource and relays events to the other tabs over a
 * BroadcastChannel: browsers allow only six HTTP/1.1 connections per host.
 * Resume is exact: the SSE id is a cursor over every channel, kept here and
 * sent again on every reconnect (token renewal, leader change, relay restart).
 */
(function (root) {
  "use strict";

  var LEASE_MS = 5000;
  var RENEW_LEASE_MS = 2000;
  var MAX_BACKOFF_MS = 30000;

  function Stream(options) {
    if (!options || !options.url) throw new Error("KaraffeEvents.connect needs a url");
    this.url = options.url;
    this.channels = (options.channels || []).slice().sort();
    this.token = options.token || null;
    this.cursor = options.cursor || "";
    this.renew = options.renew || null;
    this.withCredentials = !!options.withCredentials;
    this.handlers = {};
    this.resetHandlers = [];
    this.statusHandlers = [];
    this.status = "connecting";
    this.closed = false;
    this.source = null;
    this.backoff = 1000;
    this.leader = false;
    this.key = "karaffe-events:" + this.url + "|" + this.channels.join(",");
    this.id = Math.random().toString(36).slice(2);
    var canShare = typeof BroadcastChannel !== "undefined";
    this.share = options.share !== false && canShare;
    if (this.share) {
      this.bus = new BroadcastChannel(this.key);
      this.bus.onmessage = this._onBus.bind(this);
      this.bus.postMessage({ kind: "hello" });
      this._elect();
    } else {
      this._lead();
    }
  }

  Stream.prototype.on = function (type, fn) {
    (this.handlers[type] = this.handlers[type] || []).push(fn);
    return this;
  };

  Stream.prototype.off = function (type, fn) {
    var list = this.handlers[type] || [];
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  };

  Stream.prototype.onReset = function (fn) {
    this.resetHandlers.push(fn);
    return this;
  };

  Stream.prototype.onStatus = function (fn) {
    this.statusHandlers.push(fn);
    return this;
  };

  Stream.prototype.close = function () {
    this.closed = true;
    this._closeSource();
    if (this.releaseLock) this.releaseLock();
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.leader && this.share && !hasLocks()) {
      try { localStorage.removeItem(this.key); } catch (e) { /* private mode */ }
    }
    if (this.bus) this.bus.close();
    this._setStatus("closed");
  };

  // -- delivery ------------------------------------------------------------------

  Stream.prototype._emit = function (event) {
    var lists = [this.handlers[event.type] || [], this.handlers["*"] || []];
    for (var l = 0; l < lists.length; l++) {
      for (var i = 0; i < lists[l].length; i++) {
        try { lists[l][i](event); } catch (err) { setTimeout(function () { throw err; }); }
      }
    }
  };

  Stream.prototype._reset = function (channel) {
    if (!this.resetHandlers.length) {
      root.location.reload();
      return;
    }
    for (var i = 0; i < this.resetHandlers.length; i++) this.resetHandlers[i](channel);
  };

  Stream.prototype._setStatus = function (status) {
    if (this.status === status) return;
    this.status = status;
    for (var i = 0; i < this.statusHandlers.length; i++) this.statusHandlers[i](status);
  };

  Stream.prototype._onBus = function (message) {
    var m = message.data;
    if (!m) return;
    if (this.leader) {
      // A new tab asks who holds the connection and in what state.
      if (m.kind === "hello") this._broadcast({ kind: "status", status: this.status, cursor: this.cursor });
      return;
    }
    if (m.cursor) this.cursor = m.cursor;
    if (m.kind === "event") this._emit(m.event);
    else if (m.kind === "reset") this._reset(m.channel);
    else if (m.kind === "status") this._setStatus(m.status);
  };

  Stream.prototype._broadcast = function (message) {
    if (this.bus) this.bus.postMessage(message);
  };

  // -- leadership ------------------------------------------------------------------

  function hasLocks() {
    return typeof navigator !== "undefined" && navigator.locks && navigator.locks.request;
  }

  Stream.prototype._elect = function () {
    var self = this;
    if (hasLocks()) {
      navigator.locks.request(this.key, function () {
        if (self.closed) return undefined;
        return new Promise(function (resolve) {
          self.releaseLock = resolve;
          self._lead();
        });
      });
      return;
    }
    // No Web Locks: a lease in localStorage, renewed by the leader.
    var tryLead = function () {
      if (self.closed || self.leader) return;
      var now = Date.now();
      var lease = null;
      try { lease = JSON.parse(localStorage.getItem(self.key) || "null"); } catch (e) { lease = null; }
      if (!lease || lease.expires < now || lease.id === self.id) {
        localStorage.setItem(self.key, JSON.stringify({ id: self.id, expires: now + LEASE_MS }));
        self._lead();
      }
    };
    tryLead();
    this.leaseTimer = setInterval(function () {
      if (self.leader) {
        localStorage.setItem(self.key, JSON.stringify({ id: self.id, expires: Date.now() + LEASE_MS }));
      } else {
        tryLead();
      }
    }, RENEW_LEASE_MS);
    root.addEventListener("pagehide", function () { self.close(); });
  };

  Stream.prototype._lead = function () {
    this.leader = true;
    this._open();
  };

  // -- the connection ------------------------------------------------------------------

  Stream.prototype._streamUrl = function () {
    var parts = [];
    for (var i = 0; i < this.channels.length; i++) {
      parts.push("channel=" + encodeURIComponent(this.channels[i]));
    }
    if (this.token) parts.push("token=" + encodeURIComponent(this.token));
    if (this.cursor) parts.push("cursor=" + encodeURIComponent(this.cursor));
    return this.url + (this.url.indexOf("?") >= 0 ? "&" : "?") + parts.join("&");
  };

  Stream.prototype._closeSource = function () {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  };

  Stream.prototype._open = function () {
    if (this.closed) return;
    var self = this;
    this._closeSource();
    this._setStatus("connecting");
    this._broadcast({ kind: "status", status: "connecting" });
    var source = new EventSource(this._streamUrl(), { withCredentials: this.withCredentials });
    this.source = source;
    var track = function (e) {
      if (e.lastEventId) self.cursor = e.lastEventId;
    };
    source.onopen = function () {
      self.backoff = 1000;
      self._setStatus("open");
      self._broadcast({ kind: "status", status: "open" });
    };
    source.onmessage = function (e) {
      track(e);
      var event = JSON.parse(e.data);
      self._emit(event);
      self._broadcast({ kind: "event", event: event, cursor: self.cursor });
    };
    source.addEventListener("reset", function (e) {
      track(e);
      var channel = JSON.parse(e.data).channel;
      self._broadcast({ kind: "reset", channel: channel, cursor: self.cursor });
      self._reset(channel);
    });
    source.addEventListener("token-expiring", function () {
      // Without a renew function the stream runs until the token expires.
      if (self.renew) self._renewAndReopen(0);
    });
    source.addEventListener("auth-expired", function (e) {
      var reason = JSON.parse(e.data).reason;
      self._closeSource();
      if (reason === "revoked" || !self.renew) {
        self.close();
      } else {
        self._renewAndReopen(0);
      }
    });
    source.addEventListener("reconnect", function () {
      self._closeSource();
      self._later(self.backoff);
    });
    source.onerror = function () {
      // EventSource retries by itself after network errors (readyState
      // CONNECTING); a refused request (401/403) closes it: renew, back off.
      // A 404 means no stream is served at this URL (a Redis broker with no
      // relay wired in): retrying cannot help, so stop and say so.
      if (source.readyState === EventSource.CLOSED && self.source === source) {
        self._probe(function (status) {
          if (self.source !== source || self.closed) return;
          if (status === 404) {
            self._off();
            return;
          }
          self._renewAndReopen(self.backoff);
          self.backoff = Math.min(self.backoff * 2, MAX_BACKOFF_MS);
        });
      }
    };
  };

  // The HTTP status of the stream URL (EventSource does not expose it), or 0
  // when it cannot be known (no fetch, a network error, a cross-origin answer
  // without CORS). The body is not read: the request is aborted at once.
  Stream.prototype._probe = function (done) {
    if (typeof fetch === "undefined" || typeof AbortController === "undefined") {
      done(0);
      return;
    }
    var controller = new AbortController();
    fetch(this._streamUrl(), {
      credentials: this.withCredentials ? "include" : "same-origin",
      headers: { Accept: "text/event-stream" },
      signal: controller.signal,
    }).then(function (response) {
      controller.abort();
      done(response.status);
    }, function () {
      done(0);
    });
  };

  // No stream at this URL: stop for good, status "off" (here and in the
  // tabs that follow this one).
  Stream.prototype._off = function () {
    this._closeSource();
    this.closed = true;
    this._setStatus("off");
    this._broadcast({ kind: "status", status: "off" });
    if (typeof console !== "undefined") {
      console.warn("karaffe-events: " + this.url + " answered 404: live updates are off");
    }
  };

  Stream.prototype._later = function (delay) {
    var self = this;
    setTimeout(function () { self._open(); }, delay);
  };

  Stream.prototype._renewAndReopen = function (delay) {
    var self = this;
    if (!this.renew) {
      this._later(delay);
      return;
    }
    Promise.resolve()
      .then(function () { return self.renew(); })
      .then(function (token) {
        if (token) self.token = token;
        self._later(delay);
      }, function () {
        self._later(Math.max(delay, self.backoff));
        self.backoff = Math.min(self.backoff * 2, MAX_BACKOFF_MS);
      });
  };

  // -- fragments: the server renders, the page swaps --------------------------------

  // GET a fragment of HTML rendered by the server, with the page's cookies.
  // Resolves {status, fragment}: fragment is a DocumentFragment (200), or
  // null when the server says there is nothing to show (204: the object no
  // longer belongs here; 404 and 410: it is gone). Other statuses, and a
  // redirect (a session that ended leads to a login page, which must not be
  // swapped in), reject.
  function fetchFragment(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    }).then(function (response) {
      var status = response.status;
      if (response.redirected) throw new Error("karaffe-events: " + url + " redirected");
      if (status === 204 || status === 404 || status === 410) {
        return { status: status, fragment: null };
      }
      if (!response.ok) throw new Error("karaffe-events: " + url + " answered " + status);
      return response.text().then(function (html) {
        return { status: status, fragment: parseFragment(html) };
      });
    });
  }

  function parseFragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  // Put `fragment` (a DocumentFragment, a node, or an HTML string) in the
  // document relative to `target`: "replace" (the default) replaces it,
  // "inner" its children, "append"/"prepend" adds inside, "before"/"after"
  // next to it; "remove" (or a null fragment with "replace") removes it.
  // Returns the elements inserted.
  function swap(target, fragment, how) {
    how = how || "replace";
    if (!target) return [];
    if (typeof fragment === "string") fragment = parseFragment(fragment);
    if (how === "remove" || (fragment == null && how === "replace")) {
      if (target.parentNode) target.parentNode.removeChild(target);
      return [];
    }
    if (fragment == null) return [];
    var inserted = [];
    var children = fragment.nodeType === 11 ? fragment.children : [fragment];
    for (var i = 0; i < children.length; i++) inserted.push(children[i]);
    if (how === "replace") target.replaceWith(fragment);
    else if (how === "inner") target.replaceChildren(fragment);
    else if (how === "append") target.append(fragment);
    else if (how === "prepend") target.prepend(fragment);
    else if (how === "before") target.before(fragment);
    else if (how === "after") target.after(fragment);
    else throw new Error("karaffe-events: unknown swap " + how);
    return inserted;
  }

  // Every top-level element of `fragment` that has an id replaces the
  // element of the document with that id (one response updating several
  // parts of a page). Returns the elements swapped in.
  function swapById(fragment) {
    var swapped = [];
    if (!fragment) return swapped;
    var children = Array.prototype.slice.call(fragment.children);
    for (var i = 0; i < children.length; i++) {
      var current = children[i].id && document.getElementById(children[i].id);
      if (current) {
        current.replaceWith(children[i]);
        swapped.push(children[i]);
      }
    }
    return swapped;
  }

  // refresher(task) returns refresh(key, ...args): runs task(key, ...args)
  // (which may return a promise), one at a time per key. Events that arrive
  // while a refresh of the same key runs are folded into one more run after
  // it, with the latest arguments: a burst of changes costs two fetches at
  // most, and the last one always starts after the last event.
  function refresher(task) {
    var running = {};
    return function refresh(key) {
      var args = Array.prototype.slice.call(arguments);
      var state = running[key];
      if (state) {
        state.again = true;
        state.args = args;
        return state.promise;
      }
      state = running[key] = { again: false, args: args };
      var run = function () {
        state.again = false;
        return Promise.resolve()
          .then(function () { return task.apply(null, state.args); })
          .catch(function (err) { setTimeout(function () { throw err; }); })
          .then(function () {
            if (state.again) return run();
            delete running[key];
            return undefined;
          });
      };
      state.promise = run();
      return state.promise;
    };
  }

  root.KaraffeEvents = {
    connect: function (options) { return new Stream(options); },
    Stream: Stream,
    fetchFragment: fetchFragment,
    parseFragment: parseFragment,
    swap: swap,
    swapById: swapById,
    refresher: refresher,
  };
})(typeof window !== "undefined" ? window : this);

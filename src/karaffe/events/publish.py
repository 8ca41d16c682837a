"""Publishing from Flask: an event exists exactly when its data committed.

:func:`publish` inside a SQLAlchemy transaction (the app's Flask-SQLAlchemy
``db.session``) holds the event until the transaction commits, and drops it
if it rolls back (a rolled-back savepoint drops the events published inside
it); outside a transaction the event goes out at once::

    from karaffe import events

    issue = Issue(title=form.title.data)
    db.session.add(issue)
    events.publish(f"project:{project.id}", "issue.created", {"id": issue.id})
    db.session.commit()     # the event is sent now, after the data is visible

With a broker outside the process (Redis), the events of a transaction are
written to the outbox table in that transaction, then sent right after the
commit, or later by ``flask karaffe dispatch`` when the broker is down
(:mod:`karaffe.events.outbox`). With the in-process broker they are sent
after the commit.

:class:`Events` is the extension: ``Events(app)`` or ``events.init_app(app)``.

Access ends by itself: the extension listens to
:data:`karaffe.signals.membership_changed` and
:data:`karaffe.signals.credentials_revoked` and :func:`revoke` what a change
withdrew, so that open streams end on every relay within a second and the
old channel tokens are refused.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from blinker import Namespace
from flask import Blueprint, Flask, current_app, has_app_context
from sqlalchemy.orm import Session, SessionTransaction

from ..cli import serves_requests
from ..config import ConfigError, CoreSettings
from ..signals import credentials_revoked, membership_changed
from . import devstream
from .brokers import Broker, MemoryBroker, RedisBroker
from .cli import init_app as add_commands
from .outbox import Dispatcher, write_outbox
from .protocol import Event, dump_data, encode_cursor, validate_channel, validate_type
from .settings import EventsSettings
from .tokens import TokenSigner

__all__ = [
    "Events",
    "EventsState",
    "announce",
    "channel_token",
    "cursor",
    "event_published",
    "publish",
    "revoke",
]

log = logging.getLogger("karaffe.events")

_signals = Namespace()

#: Sent with ``sender=app`` and ``event=...`` after an event reached the broker
#: (the ``captured_events`` fixture listens to it).
event_published = _signals.signal("karaffe.event-published")

_PENDING = "karaffe.events.pending"
_RELEASED = "karaffe.events.savepoint-released"
_STATE = "karaffe.events.state"
_OUTBOXED = "karaffe.events.outboxed"
_COMMITTED = "karaffe.events.outbox-committed"


class EventsState:
    """Per-app state, at ``app.extensions["karaffe.events"]``. The broker and
    the signer are built on first use, from the configuration the app has
    then, so ``init_app`` may run before or after ``app.configure``."""

    def __init__(self, app: Flask, ext: Events) -> None:
        self.app = app
        self.ext = ext
        self._broker: Broker | None = None
        self._signer: TokenSigner | None = None
        self._dispatcher: Dispatcher | None = None
        self._outbox: bool | None = None
        # Reentrant: building the dispatcher builds the broker.
        self._lock = threading.RLock()

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            with self._lock:
                if self._broker is None:
                    self._broker = self.ext.make_broker(self.app)
        return self._broker

    @property
    def outbox(self) -> bool:
        """Whether events published in a transaction go through the outbox
        table (``EVENTS_OUTBOX``; ``auto``: unless the broker is in-process)."""
        if self._outbox is None:
            setting = EventsSettings.of(self.app).events_outbox
            self._outbox = (
                not isinstance(self.broker, MemoryBroker) if setting == "auto" else setting
            )
        return self._outbox

    @property
    def dispatcher(self) -> Dispatcher:
        """Sends the outbox's events (see :mod:`karaffe.events.outbox`)."""
        if self._dispatcher is None:
            with self._lock:
                if self._dispatcher is None:
                    self._dispatcher = self.ext.make_dispatcher(self.app)
        return self._dispatcher

    @property
    def signer(self) -> TokenSigner:
        if self._signer is None:
            self._signer = self.ext.make_signer(self.app)
        return self._signer

    @property
    def serves_stream(self) -> bool:
        """Whether the app serves ``/events/stream`` itself."""
        serve = EventsSettings.of(self.app).events_serve_stream
        if serve == "auto":
            return isinstance(self.broker, MemoryBroker)
        return serve


class Events:
    """The live-events extension: a broker, channel tokens, after-commit
    publishing, and (with the memory broker) the app's own SSE endpoint.

    Settings are in :class:`karaffe.events.settings.EventsSettings` (``EVENTS_BROKER``,
    ``REDIS_URL``, ``EVENTS_HISTORY_SIZE``, ``EVENTS_TOKEN_MAX_AGE``,
    ``EVENTS_RELAY_URL``...).
    """

    #: Broker classes by ``EVENTS_BROKER`` name.
    broker_classes: dict[str, type[Broker]] = {"memory": MemoryBroker, "redis": RedisBroker}
    #: Sends the transactional outbox's events to the broker.
    dispatcher_class = Dispatcher
    #: Signs channel tokens; replace to change the token format.
    signer_class = TokenSigner
    #: Key in ``app.extensions``.
    extension_key = "karaffe.events"

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        EventsSettings.of(app)
        state = EventsState(app, self)
        app.extensions[self.extension_key] = state
        if getattr(app, "configured", True):
            # Refuse a bad broker configuration at start-up, not at first use.
            state.broker  # noqa: B018
            self.check_wiring(state)
        _install_session_hooks()
        _install_signal_receivers()
        app.register_blueprint(self.make_blueprint(app))
        app.add_template_global(channel_token, "channel_token")
        app.add_template_global(cursor, "events_cursor")
        app.add_template_global(lambda: stream_url(), "events_stream_url")
        add_commands(app)

    def check_wiring(self, state: EventsState) -> None:
        """Warn once, at start-up, when browsers could not reach any stream:
        a broker other than the in-process one, the app not serving
        ``/events/stream`` and no ``EVENTS_RELAY_URL``. Pages would ask the
        app's stream, get 404, and have no live updates.

        Only a process serving the app's pages warns (a WSGI server's worker,
        ``flask run``): the relay, the dispatcher, the scheduler and other
        commands build the same app, serve no page, and stay quiet."""
        settings = EventsSettings.of(state.app)
        if state.serves_stream or settings.events_relay_url or not serves_requests():
            return
        log.warning(
            "live updates are off: the broker is %s, the app does not serve "
            "/events/stream (EVENTS_SERVE_STREAM) and EVENTS_RELAY_URL is not set, so "
            "browsers get 404. Run `flask karaffe relay` and set EVENTS_RELAY_URL to its "
            "stream (/events/stream when a proxy sends it to the relays; the relay's "
            "full URL plus EVENTS_CORS_ORIGINS when it is on another origin). "
            "See docs/deploy.md.",
            type(state.broker).__name__,
        )

    def make_broker(self, app: Flask) -> Broker:
        """The broker named by ``EVENTS_BROKER`` (``auto``: redis when
        ``REDIS_URL`` is set)."""
        settings = EventsSettings.of(app)
        url = CoreSettings.of(app).redis_url
        name = settings.events_broker
        if name == "auto":
            name = "redis" if url else "memory"
        size = settings.events_history_size
        if name == "redis":
            if not url:
                raise ConfigError("setting EVENTS_BROKER is redis but REDIS_URL is not set")
            return RedisBroker(
                url, size, settings.events_redis_prefix, settings.events_redis_cluster
            )
        return MemoryBroker(size)

    def make_dispatcher(self, app: Flask) -> Dispatcher:
        """The outbox's dispatcher, with the ``EVENTS_OUTBOX_*`` settings."""
        settings = EventsSettings.of(app)
        return self.dispatcher_class(
            app,
            state_for(app).broker,
            timeout=settings.events_outbox_timeout,
            sweep_timeout=settings.events_outbox_sweep_timeout,
            give_up=settings.events_outbox_give_up,
        )

    def make_signer(self, app: Flask) -> TokenSigner:
        core = CoreSettings.of(app)
        return self.signer_class(
            core.secret_key or "",
            core.secret_key_fallbacks,
            EventsSettings.of(app).events_token_max_age,
        )

    #: Attempts to reach the broker after a commit before giving up.
    after_commit_attempts = 3

    def send_after_commit(
        self, state: EventsState, items: Sequence[tuple[str, str, bytes]]
    ) -> None:
        """Send the events of a committed transaction without the outbox
        (the in-process broker, or ``EVENTS_OUTBOX=false``). The data is
        committed already, so a broker failure must not turn the request into
        an error: retry briefly, then log the lost events."""
        for attempt in range(self.after_commit_attempts):
            try:
                _send(state, items)
                return
            except Exception:
                if attempt + 1 == self.after_commit_attempts:
                    log.exception(
                        "karaffe.events: %d committed event(s) could not be published: %s",
                        len(items),
                        ", ".join(f"{channel} {type}" for channel, type, _ in items),
                    )
                    return
                time.sleep(0.05 * (attempt + 1))

    def on_membership_changed(
        self, app: Flask, user_id: int, old_role: str | None, new_role: str | None
    ) -> None:
        """A membership changed (and committed): cut what it withdrew. karaffe
        knows no app's channels, so a removed membership or a lower role
        revokes every channel token of the user issued until now; pages
        rendered from now on hand out tokens for what the user still sees.
        Override for a finer rule."""
        if old_role is not None and (new_role is None or _is_lower(new_role, old_role)):
            self.revoke_after_change(app, user_id, None)

    def on_credentials_revoked(self, app: Flask, user_id: int, credential: str | None) -> None:
        """A credential ended (``None``: all of the user's): revoke the channel
        tokens bound to it."""
        self.revoke_after_change(app, user_id, credential)

    def revoke_after_change(self, app: Flask, user_id: int, credential: str | None) -> None:
        """:func:`revoke` for a committed change; a broker failure is logged,
        not raised (the tokens still expire after ``EVENTS_TOKEN_MAX_AGE``)."""
        state = state_for(app)
        for attempt in range(self.after_commit_attempts):
            try:
                state.broker.revoke(str(user_id), time.time(), credential)
                return
            except Exception:
                if attempt + 1 == self.after_commit_attempts:
                    log.exception(
                        "karaffe.events: could not revoke the channel tokens of user %s (%s)",
                        user_id,
                        credential or "all credentials",
                    )
                    return
                time.sleep(0.05 * (attempt + 1))

    def make_blueprint(self, app: Flask) -> Blueprint:
        """The ``karaffe_events`` blueprint: the JS client as a static file at
        ``/events/static/karaffe-events.js``, and ``/events/stream`` (a 404
        unless the app streams itself, see :mod:`karaffe.events.devstream`)."""
        return devstream.make_blueprint(state_for(app))


def state_for(app: Flask | None = None) -> EventsState:
    target = app if app is not None else current_app
    try:
        return t.cast(EventsState, target.extensions[Events.extension_key])
    except KeyError:
        raise RuntimeError(
            "karaffe.events is not set up on this app: call Events().init_app(app)"
        ) from None


# -- publishing ------------------------------------------------------------------


def publish(channel: str, type: str, data: t.Any = None) -> None:
    """Publish an event on ``channel``: after the current transaction of the
    app's ``db.session`` commits (never if it rolls back), or at once when no
    transaction is open. ``data`` is any JSON value; it is encoded now, so
    later changes to the objects do not leak into the event."""
    validate_channel(channel)
    validate_type(type)
    item = (channel, type, dump_data(data))
    state = state_for()
    session = _current_session(state.app)
    if session is not None and session.in_transaction():
        trans = session.get_nested_transaction() or session.get_transaction()
        assert trans is not None
        _pending(session).setdefault(trans, []).append(item)
        session.info[_STATE] = state
        return
    _send(state, [item])


def _send(state: EventsState, items: Sequence[tuple[str, str, bytes]]) -> None:
    announce(state.app, state.broker.append_many(items), items)


def announce(app: Flask, ids: Sequence[str], items: Sequence[tuple[str, str, bytes]]) -> None:
    """Send :data:`event_published` for events the broker took (their data is
    decoded only when a receiver reads it)."""
    if event_published.receivers:
        for id, (channel, type, data_json) in zip(ids, items, strict=True):
            event_published.send(app, event=Event.from_json(id, channel, type, data_json))


def _current_session(app: Flask) -> Session | None:
    """The app's Flask-SQLAlchemy session for this app context, if one was
    used (asking for it does not create one)."""
    ext = app.extensions.get("sqlalchemy")
    scoped = getattr(ext, "session", None)
    if scoped is None or not has_app_context() or not scoped.registry.has():
        return None
    return t.cast(Session, scoped())


def _pending(session: Session) -> dict[SessionTransaction, list[tuple[str, str, bytes]]]:
    return t.cast(
        dict[SessionTransaction, list[tuple[str, str, bytes]]],
        session.info.setdefault(_PENDING, {}),
    )


_hooks_installed = False


def _install_session_hooks() -> None:
    """Listen to every SQLAlchemy session (once per process); sessions
    without pending events are left alone."""
    global _hooks_installed
    if _hooks_installed:
        return
    sa.event.listen(Session, "before_commit", _before_commit)
    sa.event.listen(Session, "after_commit", _after_commit)
    sa.event.listen(Session, "after_transaction_end", _after_transaction_end)
    _hooks_installed = True


def _before_commit(session: Session) -> None:
    """The outermost transaction is about to commit: write its events to the
    outbox, in it, when the outbox is on."""
    pending = session.info.get(_PENDING)
    if not pending or session.in_nested_transaction():
        return
    state: EventsState | None = session.info.get(_STATE)
    if state is None or not state.outbox:
        return
    items = [item for trans in list(pending) for item in pending.pop(trans)]
    if items:
        engine, channels = write_outbox(session, items)
        outboxed = session.info.setdefault(_OUTBOXED, {})
        outboxed.setdefault(engine, []).extend(c for c in channels if c not in outboxed[engine])


def _after_commit(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if session.in_nested_transaction():
        if pending:
            # A savepoint was released: its events join the enclosing
            # transaction when it ends (just after this).
            session.info[_RELEASED] = True
        return
    if _OUTBOXED in session.info:
        # Sent once the transaction has ended and given its connection back.
        session.info[_COMMITTED] = session.info.pop(_OUTBOXED)
    items = [item for trans in list(pending) for item in pending.pop(trans)] if pending else []
    if items:
        state: EventsState = session.info.get(_STATE) or state_for()
        state.ext.send_after_commit(state, items)


def _after_transaction_end(session: Session, trans: SessionTransaction) -> None:
    if trans.parent is None:
        # Written to the outbox by a transaction that did not commit after
        # all: nothing to send.
        session.info.pop(_OUTBOXED, None)
        committed = session.info.pop(_COMMITTED, None)
        if committed:
            state: EventsState = session.info.get(_STATE) or state_for()
            for engine, channels in committed.items():
                state.dispatcher.send_committed(engine, channels)
    pending = session.info.get(_PENDING)
    released = session.info.pop(_RELEASED, False)
    if not pending or trans not in pending:
        return
    items = pending.pop(trans)
    # Only a released savepoint hands its events on; a rolled-back one, or
    # an outermost transaction ending without a commit, drops them.
    if trans.nested and released and trans.parent is not None:
        pending.setdefault(trans.parent, []).extend(items)


# -- access that ends ----------------------------------------------------------------


def _is_lower(role: str, than: str) -> bool:
    """Whether ``role`` ranks below ``than`` (an unknown role counts as lower)."""
    from .._tenancy.models import role_rank

    try:
        return role_rank(role) < role_rank(than)
    except ValueError:
        return True


_receivers_installed = False


def _install_signal_receivers() -> None:
    """Listen to karaffe's access signals (once per process); each app with
    the extension acts on those it sends."""
    global _receivers_installed
    if _receivers_installed:
        return
    membership_changed.connect(_receive_membership_changed)
    credentials_revoked.connect(_receive_credentials_revoked)
    _receivers_installed = True


def _receive_membership_changed(sender: Flask, **kwargs: t.Any) -> None:
    state = sender.extensions.get(Events.extension_key)
    if isinstance(state, EventsState):
        state.ext.on_membership_changed(
            sender, kwargs["user_id"], kwargs.get("old_role"), kwargs.get("new_role")
        )


def _receive_credentials_revoked(sender: Flask, **kwargs: t.Any) -> None:
    state = sender.extensions.get(Events.extension_key)
    if isinstance(state, EventsState):
        state.ext.on_credentials_revoked(sender, kwargs["user_id"], kwargs.get("credential"))


# -- tokens and cursors for pages ----------------------------------------------------

#: Bind a channel token to the request's credential (see :func:`channel_token`).
CURRENT_CREDENTIAL: t.Final = "current"


def channel_token(
    user: t.Any,
    channels: Iterable[str],
    *,
    max_age: int | None = None,
    credential: str | None = CURRENT_CREDENTIAL,
) -> str:
    """A signed token letting ``user`` (an object with ``id``, or an id)
    subscribe to ``channels``; the app decides which channels a user gets.

    The token is bound to ``credential``: by default the one that
    authenticated the current request for that user (its login session or
    API token, :func:`karaffe.auth.current_credential`), so that logging out
    or revoking the token ends the streams it opened; ``None`` binds it to
    none (revoking all of the user's access still ends it)."""
    user_id = getattr(user, "id", user)
    if credential == CURRENT_CREDENTIAL:
        credential = _request_credential(user_id)
    return state_for().signer.sign(user_id, channels, max_age=max_age, credential=credential)


def _request_credential(user_id: t.Any) -> str | None:
    """The current request's credential, if it authenticated ``user_id``."""
    from flask import has_request_context

    if not has_request_context() or "karaffe.auth" not in current_app.extensions:
        return None
    from ..auth import current_credential, get_user

    user = get_user()
    if user is None or str(user.id) != str(user_id):
        return None
    return current_credential()


def cursor(channels: Iterable[str]) -> str:
    """The current position in ``channels`` as a cursor: a page renders it
    with its data, and the client passes it on its first connection, so that
    nothing published between render and connect is missed."""
    chans = list(channels)
    return encode_cursor(state_for().broker.positions(chans))


def revoke(user: t.Any, at: float | None = None, *, credential: str | None = None) -> None:
    """Cut ``user``'s open streams on every relay and refuse their tokens
    issued before ``at`` (now by default); with ``credential``, only those
    bound to it. karaffe calls it when access ends (see the module's
    docstring): call it yourself for access your app withdraws otherwise."""
    user_id = str(getattr(user, "id", user))
    state_for().broker.revoke(user_id, time.time() if at is None else at, credential)


def stream_url() -> str:
    """Where browsers connect: ``EVENTS_RELAY_URL`` or the app's own stream."""
    from flask import url_for

    configured = EventsSettings.of().events_relay_url
    return configured or url_for("karaffe_events.stream")

"""Signals karaffe sends when who a request acts for changes, and when
someone's access is withdrawn.

Like Flask's own signals (:mod:`flask.signals`), they are blinker signals sent
with the app as sender; connect to them to react in any part of an app::

    from karaffe.signals import membership_changed

    @membership_changed.connect_via(app)
    def audit(app, user_id, organization_id, old_role, new_role, **extra):
        log.info("user %s: %s -> %s in org %s", user_id, old_role, new_role, organization_id)

:data:`membership_changed` and :data:`credentials_revoked` are sent after the
change committed (:func:`karaffe.db.after_commit`), so a receiver sees what
every process sees; receivers must not use the database session they were sent
from. :mod:`karaffe.events` listens to both and cuts the live streams the change
withdrew, on every relay (``docs/events.md``).
"""

from __future__ import annotations

from blinker import Namespace

__all__ = ["credentials_revoked", "membership_changed", "user_changed"]

_signals = Namespace()

#: Sent by :func:`karaffe.auth.login_user` and :func:`~karaffe.auth.logout_user`
#: (and when a login session is rotated or ended from its own request) when the
#: user of the current request changes, with the app as sender and ``user``
#: (``None`` after a logout). Whatever was derived from the previous user for
#: this request (such as the organizations it may see) is to be forgotten::
#:
#:     @user_changed.connect
#:     def forget(app, user):
#:         g.pop("_myapp_permissions", None)
user_changed = _signals.signal("karaffe.user-changed")

#: A membership was created, removed, or its role changed. Keyword arguments:
#: ``user_id``, ``organization_id``, ``old_role`` (``None``: the user was not a
#: member) and ``new_role`` (``None``: no longer a member). Sent by
#: :mod:`karaffe.tenancy` for every change the ORM's unit of work writes
#: (:func:`karaffe.tenancy.remove_member`, :func:`~karaffe.tenancy.change_role`,
#: ``session.delete(membership)``, ``membership.role = ...``, deleting an
#: organization); not for bulk ``UPDATE``/``DELETE`` statements, which do not
#: say which rows they changed.
membership_changed = _signals.signal("karaffe.membership-changed")

#: Credentials of a user stopped being valid. Keyword arguments: ``user_id``;
#: ``credential``, the credential that ended (``"session:<id>"`` for a login
#: session, ``"api-token:<id>"`` for an API token) or ``None`` for all of them;
#: and ``reason``: ``"logout"``, ``"session-ended"``, ``"password-changed"``,
#: ``"deactivated"``, ``"deleted"`` or ``"api-token-revoked"``. Sent by
#: :mod:`karaffe.auth`.
credentials_revoked = _signals.signal("karaffe.credentials-revoked")

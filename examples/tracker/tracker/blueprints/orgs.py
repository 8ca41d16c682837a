"""Organizations: create one, its projects, members and roles, invitation
links, labels, removing members and leaving it.

Pages under ``/o/<org_slug>/`` get the organization from karaffe's tenancy
layer (:data:`karaffe.tenancy.current_org`): an organization the viewer is
not a member of is a 404 before the view runs.
"""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Conflict

from karaffe.auth import get_user, login_required
from karaffe.db import db
from karaffe.tenancy import ROLES, current_org, current_role

from .. import mentions, services
from ..forms import FieldError, Form
from ..labels import color_for
from ..models import Label
from ..schemas import InvitationIn, LabelIn, LabelPatch, OrganizationIn
from ..web import in_current_org, viewer

blueprint = Blueprint("orgs", __name__)

# Every write reads what its answer needs (ids, names, whole pages) before the
# commit and no model after it: see tracker.blueprints.api_v1.


def _can_manage() -> bool:
    return current_role() in ("admin", "owner")


@blueprint.route("/orgs/new", methods=["GET", "POST"])
@login_required
def new() -> ResponseReturnValue:
    form = Form()
    if request.method == "POST":
        form = Form.from_request(OrganizationIn)
        data = form.validate(OrganizationIn)
        if data is None:
            return render_template("orgs/new.html", form=form), 422
        try:
            org = services.create_org(data.name, viewer())
        except FieldError as exc:
            form.add_error(exc)
            return render_template("orgs/new.html", form=form), 422
        name, slug = org.name, org.slug
        db.session.commit()
        flash(f"Organization “{name}” created. Next: a project.", "success")
        return redirect(url_for("orgs.show", org_slug=slug))
    return render_template("orgs/new.html", form=form)


@blueprint.get("/o/<org_slug>/")
@login_required
def show() -> ResponseReturnValue:
    org = current_org
    return render_template(
        "orgs/show.html",
        org=org,
        projects=services.projects_of(org.id),
        open_counts=services.open_issue_counts(org.id),
    )


def _members_page(form: Form, status: int = 200, **extra: object) -> ResponseReturnValue:
    page = render_template(
        "orgs/members.html",
        org=current_org,
        memberships=services.members_of(current_org.id),
        can_manage=_can_manage(),
        viewer_role=current_role(),
        roles=ROLES,
        form=form,
        invite_days=services.invitation_days(),
        handles={m.user_id: m.handle for m in mentions.members(current_org.id)},
        **extra,
    )
    return page, status


@blueprint.get("/o/<org_slug>/members")
@login_required
def members() -> ResponseReturnValue:
    return _members_page(Form(data={"role": "member"}))


@blueprint.post("/o/<org_slug>/members/<id:user_id>/role")
@login_required
def change_role(user_id: int) -> ResponseReturnValue:
    role = request.form.get("role", "")
    try:
        membership = services.change_role(current_org.id, viewer(), user_id, role)
    except FieldError as exc:
        flash(exc.message, "error")
        return redirect(url_for("orgs.members")), 303
    except Conflict as exc:
        flash(str(exc.description), "error")
        return redirect(url_for("orgs.members")), 303
    message = f"{membership.user.name} is now {membership.role}."
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("orgs.members"))


@blueprint.post("/o/<org_slug>/members/<id:user_id>/remove")
@login_required
def remove_member(user_id: int) -> ResponseReturnValue:
    try:
        membership = services.remove_member(current_org.id, viewer(), user_id)
    except Conflict as exc:
        flash(str(exc.description), "error")
        return redirect(url_for("orgs.members")), 303
    name = membership.user.name
    db.session.commit()
    flash(f"{name} is no longer a member.", "success")
    return redirect(url_for("orgs.members"))


@blueprint.post("/o/<org_slug>/invitations")
@login_required
def invite() -> ResponseReturnValue:
    form = Form.from_request(InvitationIn)
    data = form.validate(InvitationIn)
    if data is None:
        return _members_page(form, 422)
    _, token = services.create_invitation(current_org.id, viewer(), data.role)
    url = url_for("orgs.invitation", token=token, _external=True)
    flash("Invitation link created: copy it below.", "success")
    # Rendered before the commit: the page reads the members and the viewer.
    page = _members_page(form, 201, invite_url=url, invite_role=data.role)
    db.session.commit()
    return page


@blueprint.route("/o/<org_slug>/leave", methods=["GET", "POST"])
@login_required
def leave() -> ResponseReturnValue:
    org = current_org
    if request.method == "GET":
        return render_template("orgs/leave.html", org=org)
    try:
        services.leave(org.id, viewer())
    except Conflict as exc:
        flash(str(exc.description), "error")
        return redirect(url_for("orgs.members")), 303
    name = org.name
    db.session.commit()
    flash(f"You left {name}.", "success")
    return redirect(url_for("pages.index"))


def _labels_page(form: Form, edit: tuple[int, Form] | None = None) -> str:
    return render_template(
        "orgs/labels.html",
        org=current_org,
        labels=services.labels_of(current_org.id),
        can_manage=_can_manage(),
        form=form,
        edit=edit,
        new_color=color_for(form.data.get("name") or ""),
    )


@blueprint.route("/o/<org_slug>/labels", methods=["GET", "POST"])
@login_required
def labels() -> ResponseReturnValue:
    form = Form()
    if request.method == "GET":
        return _labels_page(form)
    form = Form.from_request(LabelIn)
    data = form.validate(LabelIn)
    if data is not None:
        try:
            label = services.create_label(current_org.id, viewer(), data.name, data.color)
        except FieldError as exc:
            form.add_error(exc)
        else:
            name = label.name
            db.session.commit()
            flash(f"Label “{name}” added.", "success")
            return redirect(url_for("orgs.labels"))
    return _labels_page(form), 422


@blueprint.post("/o/<org_slug>/labels/<id:label_id>/edit")
@login_required
def edit_label(label_id: int) -> ResponseReturnValue:
    label = services.get_visible(Label, label_id)
    in_current_org(label.organization_id)
    form = Form.from_request(LabelPatch)
    data = form.validate(LabelPatch)
    if data is not None:
        try:
            services.update_label(label, viewer(), data)
        except FieldError as exc:
            form.add_error(exc)
        else:
            name = label.name
            db.session.commit()
            flash(f"Label “{name}” saved.", "success")
            return redirect(url_for("orgs.labels"))
    db.session.rollback()  # the page lists the labels as they are
    return _labels_page(Form(), edit=(label_id, form)), 422


@blueprint.post("/o/<org_slug>/labels/<id:label_id>/delete")
@login_required
def delete_label(label_id: int) -> ResponseReturnValue:
    label = services.get_visible(Label, label_id)
    in_current_org(label.organization_id)
    name = label.name
    services.delete_label(label, viewer())
    db.session.commit()
    flash(f"Label “{name}” deleted.", "success")
    return redirect(url_for("orgs.labels"))


@blueprint.get("/labels.css")
def label_styles() -> ResponseReturnValue:
    """The colours of the labels of the viewer's organizations, one class per
    label (``.label-7``): a stylesheet, since the content security policy
    allows no inline style. Pages link it; it costs them no query."""
    user = get_user()
    rows = services.all_labels() if user is not None else []
    css = "".join(
        f".label-{label.id}{{background:{label.color};color:{label.text_color}}}\n"
        for label in rows
    )
    response = make_response(css)
    response.mimetype = "text/css"
    response.headers["Cache-Control"] = "private, no-cache"
    response.add_etag()
    return response.make_conditional(request)


@blueprint.route("/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str) -> ResponseReturnValue:
    """The page an invitation link opens: join (logged in) or sign up first."""
    invite = services.read_invitation(token)
    user = get_user()
    if request.method == "POST":
        if user is None:
            return redirect(url_for("accounts.login", next=request.path))
        org = services.accept_invitation(token, user)
        slug, name = org.slug, org.name
        db.session.commit()
        flash(f"You joined {name}.", "success")
        return redirect(url_for("orgs.show", org_slug=slug))
    return render_template(
        "orgs/invitation.html", org=invite.organization, inviter=invite.created_by, role=invite.role
    )

"""The RequestContext the ``context`` filter builds, and where its fields come from."""

from __future__ import annotations

from typing import Any

from oslo_context import context as oslo_context

# Context attribute: environ keys, the first present wins (oslo.context's from_environ).
_SINGLE = (
    *("domain_id", "domain_name", "user_domain_id", "project_domain_id", "user_name"),
    *("user_domain_name", "project_domain_name", "service_token", "service_user_id"),
    *("service_user_name", "service_user_domain_id", "service_user_domain_name"),
    *("service_project_id", "service_project_name", "service_project_domain_id"),
    "service_project_domain_name",
)
SOURCES: dict[str, tuple[str, ...]] = {
    "auth_token": ("HTTP_X_AUTH_TOKEN", "HTTP_X_STORAGE_TOKEN"),
    "user_id": ("HTTP_X_USER_ID", "HTTP_X_USER"),
    "project_id": ("HTTP_X_PROJECT_ID", "HTTP_X_TENANT_ID", "HTTP_X_TENANT"),
    "project_name": ("HTTP_X_PROJECT_NAME", "HTTP_X_TENANT_NAME"),
    "system_scope": ("HTTP_OPENSTACK_SYSTEM_SCOPE",),
    "request_id": ("openstack.request_id",),
    "global_request_id": ("openstack.global_request_id",),
    **{attr: ("HTTP_X_" + attr.upper(),) for attr in _SINGLE},
}


class RequestContext(oslo_context.RequestContext):
    """oslo.context's RequestContext with ``remote_address`` and ``service_catalog``."""

    FROM_DICT_EXTRA_KEYS = ["remote_address", "service_catalog"]  # noqa: RUF012

    def __init__(
        self,
        *args: Any,
        remote_address: str | None = None,
        service_catalog: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.remote_address = remote_address
        self.service_catalog = service_catalog or []

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values.update(
            user_name=self.user_name,
            project_name=self.project_name,
            user_domain_name=self.user_domain_name,
            project_domain_name=self.project_domain_name,
            remote_address=self.remote_address,
            service_catalog=self.service_catalog,
        )
        return values


def _defaults() -> dict[str, Any]:
    """Every attribute ``RequestContext.__init__`` sets, with its default value."""

    class Probe(RequestContext):
        def update_store(self) -> None:  # not the current context of anything
            pass

    return dict(vars(Probe(request_id="-")))


# The defaults (None and booleans) as class attributes: a context the filter builds
# without __init__ holds only the attributes a request sets; reads of the others find
# the class's value, as they would find __init__'s.
for _attr, _default in _defaults().items():
    if _default is None or isinstance(_default, bool):
        setattr(RequestContext, _attr, _default)

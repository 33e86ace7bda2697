"""Who may see what: roles, and the slice of the town a principal's data is cut to.

Four roles (issue 5): an administrator and a duty officer see the whole town; a
community officer sees the sites of their own villages/communities (村/社区); an
enterprise user sees the sites of their own enterprise only. Every route filters
by :meth:`Scope.allows_site`; an object outside the scope is answered with 404, so
its existence does not leak.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.registry_model import Site


class Role(StrEnum):
    ADMIN = "admin"
    DUTY = "duty"
    COMMUNITY = "community"
    ENTERPRISE = "enterprise"

    @property
    def town_wide(self) -> bool:
        """Administrators and duty officers see the whole town."""
        return self in (Role.ADMIN, Role.DUTY)


@dataclass(frozen=True, slots=True)
class Scope:
    """The sites a principal may see.

    ``villages`` None and ``enterprise`` None is the whole town.

    >>> shop = Site("s1", "Shop", village="east", industry="small_shop", enterprise="acme")
    >>> Scope().allows_site(shop)
    True
    >>> Scope(villages=frozenset({"west"})).allows_site(shop)
    False
    >>> Scope(enterprise="acme").allows_site(shop), Scope(enterprise="other").allows_site(shop)
    (True, False)
    """

    villages: frozenset[str] | None = None
    enterprise: str | None = None

    @property
    def town_wide(self) -> bool:
        return self.villages is None and self.enterprise is None

    def allows_site(self, site: Site) -> bool:
        if self.villages is not None and site.village not in self.villages:
            return False
        return self.enterprise is None or site.enterprise == self.enterprise

    @classmethod
    def of(cls, role: Role, villages: Iterable[str] = (), enterprise: str | None = None) -> Scope:
        """The scope a role implies, refusing combinations that make no sense.

        A community officer without a village, or an enterprise user without an
        enterprise, would see nothing (or, worse, everything if the empty value
        were read as "no limit"): both are errors, as is a limit on a town-wide role.

        >>> Scope.of(Role.COMMUNITY, ["east"]).villages == frozenset({"east"})
        True
        >>> Scope.of(Role.DUTY) is TOWN
        True
        >>> Scope.of(Role.ENTERPRISE)
        Traceback (most recent call last):
        ...
        ValueError: an enterprise user needs an enterprise
        """
        wanted = frozenset(v.strip() for v in villages if v.strip())
        enterprise = (enterprise or "").strip() or None
        if role is Role.COMMUNITY:
            if not wanted:
                raise ValueError("a community officer needs at least one village")
            if enterprise is not None:
                raise ValueError("a community officer has villages, not an enterprise")
            return cls(villages=wanted)
        if role is Role.ENTERPRISE:
            if enterprise is None:
                raise ValueError("an enterprise user needs an enterprise")
            if wanted:
                raise ValueError("an enterprise user has an enterprise, not villages")
            return cls(enterprise=enterprise)
        if wanted or enterprise is not None:
            raise ValueError(f"the {role.value} role is town-wide: no villages or enterprise")
        return TOWN


#: The whole town: administrators, duty officers, and tokens created before scopes existed.
TOWN = Scope()

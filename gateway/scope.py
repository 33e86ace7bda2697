"""Who may see what: roles, and the slice of the town a principal's data is cut to.

Four roles (issue 5): an administrator and a duty officer see the whole town; a
community officer sees the sites of their own villages/communities (村/社区); an
enterprise user sees the sites of their own enterprise only. Every route filters
by :meth:`Scope.allows_site`; an object outside the scope is answered with 404, so
its existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.registry_model import Site


class Role(StrEnum):
    ADMIN = "admin"
    DUTY = "duty"
    COMMUNITY = "community"
    ENTERPRISE = "enterprise"


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


#: The whole town: administrators, duty officers, and tokens created before scopes existed.
TOWN = Scope()

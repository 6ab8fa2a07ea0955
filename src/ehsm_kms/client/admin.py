"""``AdminClient`` and ``AsyncAdminClient``: the admin actions of docs/beyond.md from anywhere the node is reachable.

The admin credential (an id ``admin-<uuid>`` and a 32-character secret, shown once by the node at its first start)
signs requests exactly like an app's APIKey, so these are sessions like :class:`~ehsm_kms.client.Client`'s with
another credential and other methods. The credential comes from the arguments or from ``EHSM_KMS_ADMIN_ID`` and
``EHSM_KMS_ADMIN_KEY``; never from an app's variables, so an app's environment cannot turn into an admin's.
"""

from __future__ import annotations

from typing import Any

from ehsm_kms.client import _calls as c
from ehsm_kms.client import results as r
from ehsm_kms.client._base import ADMIN_ID_ENV, ADMIN_KEY_ENV
from ehsm_kms.client.aio import AsyncSession
from ehsm_kms.client.sync import SyncSession


class AdminClient(SyncSession):
    """The admin actions, signed with the admin credential: ``AdminClient(url, admin_id, admin_key, ...)`` with
    the connection arguments of :class:`~ehsm_kms.client.Client`."""

    _appid_env = ADMIN_ID_ENV
    _apikey_env = ADMIN_KEY_ENV

    def __init__(self, url: str | None = None, admin_id: str | None = None, admin_key: str | None = None, **kw: Any):
        super().__init__(url, admin_id, admin_key, **kw)

    def list_apps(self) -> tuple[r.AppInfo, ...]:
        """AdminListApps: every app, active or revoked."""
        return self._run(c.admin_list_apps())

    def show_app(self, appid: str) -> r.AppInfo:
        """AdminShowApp: one app, with its number of keys."""
        return self._run(c.admin_app_action("AdminShowApp", appid))

    def revoke_app(self, appid: str) -> r.AppInfo:
        """AdminRevokeApp: every request of the app is refused (``app revoked``); its keys are kept."""
        return self._run(c.admin_app_action("AdminRevokeApp", appid))

    def restore_app(self, appid: str) -> r.AppInfo:
        """AdminRestoreApp: a revoked app works again."""
        return self._run(c.admin_app_action("AdminRestoreApp", appid))

    def rotate_apikey(self, appid: str) -> r.NewApiKey:
        """AdminRotateApiKey: a new APIKey for the app; the old one stops working."""
        return self._run(c.admin_rotate_apikey(appid))

    def issue_enroll_token(self, ttl_hours: int | None = None) -> r.EnrollToken:
        """AdminIssueEnrollToken: a one-time token for a server in ``enroll_mode=token`` (default 24 hours)."""
        return self._run(c.admin_issue_enroll_token(ttl_hours))


class AsyncAdminClient(AsyncSession):
    """The asyncio twin of :class:`AdminClient`."""

    _appid_env = ADMIN_ID_ENV
    _apikey_env = ADMIN_KEY_ENV

    def __init__(self, url: str | None = None, admin_id: str | None = None, admin_key: str | None = None, **kw: Any):
        super().__init__(url, admin_id, admin_key, **kw)

    async def list_apps(self) -> tuple[r.AppInfo, ...]:
        return await self._run(c.admin_list_apps())

    async def show_app(self, appid: str) -> r.AppInfo:
        return await self._run(c.admin_app_action("AdminShowApp", appid))

    async def revoke_app(self, appid: str) -> r.AppInfo:
        return await self._run(c.admin_app_action("AdminRevokeApp", appid))

    async def restore_app(self, appid: str) -> r.AppInfo:
        return await self._run(c.admin_app_action("AdminRestoreApp", appid))

    async def rotate_apikey(self, appid: str) -> r.NewApiKey:
        return await self._run(c.admin_rotate_apikey(appid))

    async def issue_enroll_token(self, ttl_hours: int | None = None) -> r.EnrollToken:
        return await self._run(c.admin_issue_enroll_token(ttl_hours))

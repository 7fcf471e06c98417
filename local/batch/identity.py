"""Who a task runs as: Batch's userIdentity mapped to accounts of the machine the emulator runs on.

Batch runs a task as an auto-user (scope pool or task, elevationLevel nonadmin or admin) or as a named user
account of the pool (https://learn.microsoft.com/azure/batch/batch-user-accounts). With no userIdentity a task
runs "as a non-administrative user unique to the Pool on Linux Compute Nodes"
(https://learn.microsoft.com/rest/api/batchservice/job/add#jobpreparationtask), and the auto-user's defaults
are scope pool, elevationLevel nonadmin (https://learn.microsoft.com/rest/api/batchservice/task/add#autouserspecification).

When the emulator runs as root it creates unprivileged system accounts of its own, once, and runs each task as
the one its identity names:

- auto-user, scope pool, nonadmin: `batchemu-pool` (shared by every pool: all nodes are this one machine);
- auto-user, scope task, nonadmin: `batchemu-task` (one account for every task-scope task, where Batch makes
  one per task: such tasks cannot touch pool-scope tasks' files, but can touch each other's);
- a named user account of the pool, nonadmin: `batchemu-u-{name}` (lowercased);
- admin, auto or named: root (Batch gives admin users sudo rights; the emulator cannot grant those without
  changing the machine's sudoers, so it runs them as root).

When it does not run as root it cannot switch users: every task runs as the emulator's own user, and it says
so at start-up (and in the README).
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import time
from dataclasses import dataclass

from local.batch.errors import invalid_property
from local.batch.ids import fold
from local.batch.process import failure

log = logging.getLogger("local.batch")

POOL_ACCOUNT = "batchemu-pool"
TASK_ACCOUNT = "batchemu-task"
USER_PREFIX = "batchemu-u-"
MAX_USER_NAME = 20
ELEVATIONS = ("nonadmin", "admin")
SCOPES = ("pool", "task")


@dataclass(frozen=True)
class RunAs:
    """The OS account a command runs as; uid None means the emulator's own (no switch)."""

    name: str
    uid: int | None = None
    gid: int | None = None

    @property
    def uid_gid(self) -> tuple[int, int] | None:
        return None if self.uid is None else (self.uid, self.gid)


def check_identity(name: str, identity) -> dict | None:
    """Validate a userIdentity as Batch's add requests do; None when absent."""
    if identity is None:
        return None
    if not isinstance(identity, dict):
        raise invalid_property(name, identity, "expected an object")
    user, auto = identity.get("username"), identity.get("autoUser")
    if (user is None) == (auto is None):
        raise invalid_property(name, "", "specify exactly one of username and autoUser")
    if user is not None:
        if not isinstance(user, str) or not user:
            raise invalid_property(f"{name}.username", user, "expected a non-empty string")
        return {"username": user}
    if not isinstance(auto, dict):
        raise invalid_property(f"{name}.autoUser", auto, "expected an object")
    scope = str(auto.get("scope") or "pool").lower()
    level = str(auto.get("elevationLevel") or "nonadmin").lower()
    if scope not in SCOPES:
        raise invalid_property(f"{name}.autoUser.scope", scope, "must be pool or task")
    if level not in ELEVATIONS:
        raise invalid_property(f"{name}.autoUser.elevationLevel", level, "must be nonadmin or admin")
    return {"autoUser": {"scope": scope, "elevationLevel": level}}


def check_user_accounts(accounts) -> list[dict]:
    """A pool's userAccounts: name (unique, at most 20 characters), password, elevationLevel."""
    if accounts is None:
        return []
    if not isinstance(accounts, list):
        raise invalid_property("userAccounts", accounts, "expected a list")
    seen, out = set(), []
    for account in accounts:
        if not isinstance(account, dict):
            raise invalid_property("userAccounts", account, "each user account must be an object")
        name, password = account.get("name"), account.get("password")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_USER_NAME or not name.replace("_", "").replace(
                "-", "").isalnum():
            raise invalid_property("userAccounts.name", name, f"a user name is 1 to {MAX_USER_NAME} letters, digits, "
                                   "hyphens and underscores")
        if not isinstance(password, str) or not password:
            raise invalid_property("userAccounts.password", "", "a user account needs a password")
        if fold(name) in seen:
            raise invalid_property("userAccounts.name", name, "user names must be unique within the pool")
        seen.add(fold(name))
        level = str(account.get("elevationLevel") or "nonadmin").lower()
        if level not in ELEVATIONS:
            raise invalid_property("userAccounts.elevationLevel", level, "must be nonadmin or admin")
        linux = account.get("linuxUserConfiguration") or {}
        if linux.get("uid") is not None or linux.get("gid") is not None:
            raise invalid_property("userAccounts.linuxUserConfiguration.uid", "", "fixed uids and gids are not "
                                   "supported by the emulator: it creates the account and the system picks its uid")
        out.append({**account, "elevationLevel": level})
    return out


class Identities:
    """The accounts tasks run as. `switching` is False when the emulator cannot (not root) or was told not to."""

    def __init__(self, switch_users: bool | None = None):
        root = os.geteuid() == 0
        self.switching = root if switch_users is None else (switch_users and root)
        self._me = RunAs(pwd.getpwuid(os.geteuid()).pw_name)
        self._accounts: dict[str, RunAs] = {}
        if not root:
            log.warning("not running as root: every task runs as this user whatever its userIdentity "
                        "(admin or not, auto-user or named); run the emulator as root to have them differ",
                        extra={"user": self._me.name, "uid": os.geteuid()})
        elif not self.switching:
            log.warning("user switching turned off (--no-user-accounts): every task runs as root")
        else:
            for name in (POOL_ACCOUNT, TASK_ACCOUNT):
                self.account(name)
            log.info("tasks run as unprivileged accounts", extra={"pool_scope": POOL_ACCOUNT,
                                                                  "task_scope": TASK_ACCOUNT, "admin": "root"})

    def check_reachable(self, workspace) -> None:
        """Unprivileged accounts must be able to reach the node directories: if a folder above the workspace
        is closed to others (e.g. pytest's /tmp/pytest-of-root, mode 0700), say so and run as root instead."""
        if not self.switching:
            return
        for folder in [workspace, *workspace.parents]:
            if not os.stat(folder).st_mode & 0o001:
                self.switching = False
                log.warning("the workspace is not reachable by unprivileged accounts: every task runs as root; put "
                            "the workspace under folders others may enter (mode o+x) to have tasks run as the "
                            "accounts their userIdentity names", extra={"workspace": str(workspace),
                                                                        "closed": str(folder)})
                return

    def account(self, name: str) -> RunAs:
        """The OS account `name`, created (unprivileged, no login, no home) the first time it is needed."""
        known = self._accounts.get(name)
        if known is not None:
            return known
        for _ in range(50):
            try:
                entry = pwd.getpwnam(name)
                break
            except KeyError:
                pass
            done = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                                   "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                                  capture_output=True, text=True, check=False)
            if done.returncode not in (0, 9):  # 9: it exists (another emulator made it meanwhile)
                # 10: /etc/passwd is locked by a concurrent useradd; anything else is worth a message.
                if done.returncode != 10:
                    raise OSError(f"useradd {name} failed ({done.returncode}): {done.stderr.strip()}")
                time.sleep(0.1)
        else:
            raise OSError(f"useradd {name}: /etc/passwd stayed locked")
        found = self._accounts[name] = RunAs(name, entry.pw_uid, entry.pw_gid)
        return found

    def prepare_pool(self, accounts: list[dict]) -> None:
        """Create the OS accounts of a pool's non-admin user accounts as the pool is created."""
        if self.switching:
            for account in accounts:
                if account["elevationLevel"] != "admin":
                    self.account(USER_PREFIX + fold(account["name"]))

    def run_as(self, identity: dict | None, accounts: list[dict], pool_id: str) -> RunAs | dict:
        """The account for a userIdentity on a pool, or a task failureInfo when the pool has no such user."""
        level, name = "nonadmin", POOL_ACCOUNT
        if identity and "username" in identity:
            wanted = fold(identity["username"])
            match = next((a for a in accounts if fold(a["name"]) == wanted), None)
            if match is None:
                return failure("UserAccountNotFound", f"The task's userIdentity names the user account "
                               f"{identity['username']!r}, which pool {pool_id} does not define.")
            level, name = match["elevationLevel"], USER_PREFIX + wanted
        elif identity:
            auto = identity["autoUser"]
            level, name = auto["elevationLevel"], TASK_ACCOUNT if auto["scope"] == "task" else POOL_ACCOUNT
        if not self.switching:
            return self._me
        if level == "admin":
            return RunAs("root", 0, 0)
        return self.account(name)

"""
Tenants without uid and gid get ids of their own from tenant_ids (never nobody shared by all),
kept in the state file across restarts; mcpvisor refuses to start rather than share one.
Root only: without root there are no per-tenant uids (the unprivileged mode names that).
"""
import json
import os
import pwd
import shutil

import pytest

from conftest import McpClient, base_config, tool_text

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-tenant uids need root")


def _uid(d, key):
    c = McpClient(d, key=key)
    c.initialize()
    return json.loads(tool_text(c.call_tool("whoami")))["uid"]


def test_each_tenant_gets_its_own_uid_and_keeps_it(make_daemon):
    d = make_daemon()
    acme, other = _uid(d, "alice"), _uid(d, "carol")
    assert acme != other, (acme, other)
    for u in (acme, other):
        assert 2000000000 <= u <= 2000999999, u
        with pytest.raises(KeyError):
            pwd.getpwuid(u)  # never an account the system knows
    with open(d.dir / "tenant-ids.json") as f:
        state = json.load(f)["tenants"]
    assert state == {"acme": acme, "other": other}, state
    assert os.stat(d.dir / "tenant-ids.json").st_mode & 0o077 == 0
    assert "tenant_without_uid" not in d.log

    d.stop()
    # a restart (a new daemon given the same state file): the same ids
    d2 = make_daemon(start=False)
    shutil.copy(d.dir / "tenant-ids.json", d2.dir / "tenant-ids.json")
    d2.start()
    assert (_uid(d2, "alice"), _uid(d2, "carol")) == (acme, other)
    assert "tenant_ids_assigned" not in d2.log, d2.log


def test_given_ids_are_kept_and_never_assigned_to_another(make_daemon):
    cfg = base_config()
    cfg["tenant_ids"]["from"] = 2100000000
    cfg["tenant_ids"]["to"] = 2100000001
    cfg["tenants"]["acme"].update({"uid": 2100000000, "gid": 2100000000})
    d = make_daemon(config=cfg)
    assert _uid(d, "alice") == 2100000000
    assert _uid(d, "carol") == 2100000001


def test_no_id_left_refuses_to_start(make_daemon):
    cfg = base_config()
    cfg["tenant_ids"]["from"] = 2100000010
    cfg["tenant_ids"]["to"] = 2100000010  # one id, two tenants without
    d = make_daemon(config=cfg, start=False)
    with pytest.raises(AssertionError):
        d.start(timeout=5)
    assert d.proc.wait(10) != 0
    assert "tenant_ids_unavailable" in d.log and "has none left" in d.log, d.log

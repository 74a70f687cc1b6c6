"""JupyterHub for SGD from Scratch on one machine (started by <prefix>/bin/sgd-hub).

* Local system users log in with their password (PAM); only members of the
  instructor and learner groups are let in.
* Each user's JupyterLab runs as that user (LocalProcessSpawner), from the
  course's venv, through <prefix>/bin/sgd-singleuser.
* Learners get the learner configuration of ``make lab``
  (``jupyter-config/learner``: formgrader, course list and Create Assignment
  off) and see nbgrader's Assignments panel, their notebooks and nothing else.
* Instructors start in ``~/sgd-from-scratch`` (their private copy of
  ``solutions/`` and ``nbgrader_config.py``) with the formgrader.
* Everyone's nbgrader uses the exchange set up by setup.sh.
* The hub runs the exchange's sealer (sgd_sealer.py) as a managed service, as
  root, restarted if it exits: it makes every submission in inbound/ the
  instructor's, unchangeable by its author, stamped with the exchange's time.
* jupyterhub-idle-culler, another managed service, stops a learner's server idle
  for ``cull_timeout`` seconds; its role lets it list, read and stop learners'
  servers and nothing else (instructors' servers, which run grading, are not its).
* Each user's server runs under ``mem_limit`` / ``cpu_limit`` (sgd_limits.py: a
  cgroup per user where cgroup v1 is writable, else RLIMIT_AS).
* HTTPS when ``ssl_cert`` and ``ssl_key`` are set (the proxy terminates TLS).

The values come from the settings.json that ``setup.sh install`` writes.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import sys

from jupyterhub.auth import PAMAuthenticator

settings = json.load(open(os.environ.get("SGDHUB_SETTINGS", "/opt/sgd-hub/etc/settings.json")))
prefix = settings["prefix"]
here = f"{settings['source']}/deploy/jupyterhub"
sys.path.insert(0, here)
from sgd_limits import limits_mode  # noqa: E402

c = get_config()  # noqa: F821  (provided by JupyterHub)

# ------------------------------------------------------------------ network
c.JupyterHub.bind_url = settings["bind_url"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [settings["proxy"]]
if settings.get("ssl_cert"):
    c.JupyterHub.ssl_cert = settings["ssl_cert"]
    c.JupyterHub.ssl_key = settings["ssl_key"]

# ------------------------------------------------------------------ state (root only)
c.JupyterHub.db_url = f"sqlite:///{prefix}/hub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{prefix}/hub/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{prefix}/hub/jupyterhub.pid"

# ------------------------------------------------------------------ who may log in
def _members(group: str) -> set[str]:
    try:
        g = grp.getgrnam(group)
    except KeyError:
        return set()
    return set(g.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == g.gr_gid}


class CourseAuthenticator(PAMAuthenticator):
    """PAM, and the user's course groups (instructors, learners) copied into the hub's
    groups at each login: the culler's role is limited to the learners' hub group."""

    async def authenticate(self, handler, data):
        user = await super().authenticate(handler, data)
        if user is None:
            return None
        name = user if isinstance(user, str) else user["name"]
        return {"name": name, "groups": [g for g in (settings["instructor_group"],
                                                    settings["learner_group"])
                                         if name in _members(g)]}


c.JupyterHub.authenticator_class = CourseAuthenticator
c.PAMAuthenticator.allowed_groups = {settings["instructor_group"], settings["learner_group"]}
c.PAMAuthenticator.admin_groups = set()
c.Authenticator.manage_groups = True
c.LocalAuthenticator.create_system_users = False

# ------------------------------------------------------------------ services
_settings_path = os.environ.get("SGDHUB_SETTINGS", "/opt/sgd-hub/etc/settings.json")
c.JupyterHub.services = [{
    # the exchange's sealer, as root
    "name": "sgd-sealer",
    "command": [f"{settings['venv']}/bin/python", "-I", f"{here}/sgd_sealer.py",
                "--settings", _settings_path],
}]
if settings.get("cull_timeout"):
    # stops a learner's server idle for cull_timeout s (checked every cull_every s); the
    # users stay, their files too: they start a new server at their next visit
    c.JupyterHub.services.append({
        "name": "idle-culler",
        "command": [f"{settings['venv']}/bin/python", "-m", "jupyterhub_idle_culler",
                    f"--timeout={int(settings['cull_timeout'])}",
                    f"--cull-every={int(settings['cull_every'])}"],
    })
    _learners = f"group={settings['learner_group']}"
    c.JupyterHub.load_roles = [{
        "name": "idle-culler",
        "description": "list learners' servers, read their activity, stop idle ones",
        "scopes": [f"list:users!{_learners}", f"read:users:activity!{_learners}",
                   f"read:servers!{_learners}", f"delete:servers!{_learners}"],
        "services": ["idle-culler"],
    }]

# ------------------------------------------------------------------ single-user servers
c.JupyterHub.spawner_class = "sgd_limits.LimitedSpawner"
# per user (server, kernels, terminals): "2G" etc.; CPUs as a float; empty/0 = none
_mem = str(settings.get("mem_limit") or "")
c.Spawner.mem_limit = (int(_mem) if _mem.isdigit() else _mem) or None
c.Spawner.cpu_limit = float(settings.get("cpu_limit") or 0) or None
print(f"sgd-hub: per-user limits by {limits_mode()}: memory {c.Spawner.mem_limit or 'none'},"
      f" CPU {c.Spawner.cpu_limit or 'none'}", file=sys.stderr)
c.Spawner.cmd = [f"{prefix}/bin/sgd-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
# The users' servers keep running when the hub restarts (an upgrade or a crash of the hub
# must not stop a class mid-exercise); `systemctl stop` of the whole unit still stops them.
c.JupyterHub.cleanup_servers = False


def pre_spawn_hook(spawner) -> None:
    """Learner or instructor environment, chosen from the user's groups."""
    name = spawner.user.name
    home = pwd.getpwnam(name).pw_dir
    env = {
        "PATH": f"{prefix}/bin:{settings['venv']}/bin:/usr/local/bin:/usr/bin:/bin",
        # the hub's exchange and course id for nbgrader (Assignments panel, formgrader)
        "JUPYTER_CONFIG_PATH": f"{prefix}/etc/jupyter",
    }
    if name in _members(settings["instructor_group"]):
        course = os.path.join(home, settings["course_id"])
        env["SGD_COURSE_DIR"] = course          # sgd-singleuser starts the server there
        # formgrader under a Content-Security-Policy (course.grading.render); the
        # instructors' nbgrader config: the gradebook (gradebook_db_url)
        env["JUPYTER_CONFIG_PATH"] = (f"{settings['source']}/jupyter-config/instructor:"
                                      f"{prefix}/etc/jupyter-instructor:{prefix}/etc/jupyter")
        spawner.notebook_dir = course
    else:
        env["JUPYTER_CONFIG_PATH"] = f"{settings['learner_config']}:{prefix}/etc/jupyter"
        spawner.notebook_dir = home
    spawner.environment.update(env)


c.Spawner.pre_spawn_hook = pre_spawn_hook

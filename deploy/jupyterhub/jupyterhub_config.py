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

The values come from the settings.json that ``setup.sh install`` writes.
"""

from __future__ import annotations

import grp
import json
import os
import pwd

settings = json.load(open(os.environ.get("SGDHUB_SETTINGS", "/opt/sgd-hub/etc/settings.json")))
prefix = settings["prefix"]

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
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {settings["instructor_group"], settings["learner_group"]}
c.PAMAuthenticator.admin_groups = set()
c.LocalAuthenticator.create_system_users = False

# ------------------------------------------------------------------ the exchange's sealer
_settings_path = os.environ.get("SGDHUB_SETTINGS", "/opt/sgd-hub/etc/settings.json")
c.JupyterHub.services = [{
    "name": "sgd-sealer",
    "command": [f"{settings['venv']}/bin/python", "-I",
                f"{settings['source']}/deploy/jupyterhub/sgd_sealer.py", "--settings", _settings_path],
}]

# ------------------------------------------------------------------ single-user servers
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [f"{prefix}/bin/sgd-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
# The users' servers keep running when the hub restarts (an upgrade or a crash of the hub
# must not stop a class mid-exercise); `systemctl stop` of the whole unit still stops them.
c.JupyterHub.cleanup_servers = False


def _members(group: str) -> set[str]:
    try:
        g = grp.getgrnam(group)
    except KeyError:
        return set()
    return set(g.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == g.gr_gid}


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
        # formgrader under a Content-Security-Policy (course.grading.render)
        env["JUPYTER_CONFIG_PATH"] = (f"{settings['source']}/jupyter-config/instructor:"
                                      f"{prefix}/etc/jupyter")
        spawner.notebook_dir = course
    else:
        env["JUPYTER_CONFIG_PATH"] = f"{settings['learner_config']}:{prefix}/etc/jupyter"
        spawner.notebook_dir = home
    spawner.environment.update(env)


c.Spawner.pre_spawn_hook = pre_spawn_hook

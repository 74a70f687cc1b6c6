#!/usr/bin/env bash
# SGD from Scratch on a JupyterHub for one machine (run as root).
#
#   deploy/jupyterhub/setup.sh install                 # venv, proxy, exchange, hub config
#   deploy/jupyterhub/setup.sh add-user instructor NAME
#   deploy/jupyterhub/setup.sh add-user learner NAME
#   deploy/jupyterhub/setup.sh backup DEST              # gradebook(s) + exchange into DEST/<time>/
#   passwd NAME                                        # PAM logs users in with this password
#   /opt/sgd-hub/bin/sgd-hub                           # start the hub (or the systemd unit)
#
# Everything is configurable through environment variables (the test suite,
# tests/hub, runs this very script with temporary prefixes):
#   SGDHUB_PREFIX           where the hub lives          (/opt/sgd-hub)
#   SGDHUB_VENV             the course's Python          (<this checkout>/.venv, made by `make venv`)
#   SGDHUB_EXCHANGE         nbgrader's exchange, 1777    (/srv/nbgrader/exchange)
#   SGDHUB_BIND_URL         public URL of the hub        (http://:8000)
#   SGDHUB_HUB_PORT         hub's internal API port      (8081)
#   SGDHUB_PROXY_API_PORT   proxy's REST API port        (8001)
#   SGDHUB_INSTRUCTOR_GROUP system group of instructors  (sgd-instructors)
#   SGDHUB_LEARNER_GROUP    system group of learners     (sgd-learners)
#   SGDHUB_SSL_CERT, SGDHUB_SSL_KEY  serve HTTPS (strongly advised: PAM passwords cross the wire):
#                           PEM certificate (chain) and its key, readable by root
#   SGDHUB_CULL_TIMEOUT     stop a learner's server idle this many seconds (3600; 0: never)
#   SGDHUB_CULL_EVERY       how often the culler looks, seconds          (300)
#   SGDHUB_MEM_LIMIT        memory per user's server and its kernels     (2G; empty: none)
#   SGDHUB_CPU_LIMIT        CPUs per user's server and its kernels       (1; 0: none)
#   SGDHUB_GRADEBOOK_DB_URL the instructors' gradebook, an SQLAlchemy URL (empty: nbgrader's
#                           default, gradebook.db in the instructor's course folder), e.g.
#                           postgresql://grader@db.example.org/sgd (password in ~/.pgpass)
# `install` writes them to $SGDHUB_PREFIX/etc/settings.json; `add-user` and the hub read that
# file, so set the variables once, for `install`.
#
# Layout under $SGDHUB_PREFIX:
#   bin/sgd-hub          starts JupyterHub (deploy/jupyterhub/jupyterhub_config.py)
#   bin/nbgrader         the venv's nbgrader with the hub's nbgrader config (exchange, course id)
#   bin/sgd-singleuser   a user's server: JupyterLab, started in the course folder for instructors
#   etc/settings.json    the values above (root only: it may hold the gradebook's URL)
#   etc/jupyter/         nbgrader_config.py for every user (exchange root, course id)
#   etc/jupyter-instructor/  nbgrader_config.py for instructors only (gradebook URL)
#   etc/sgd-hub.service  a systemd unit (copy to /etc/systemd/system/ to use it)
#   run/sgd-sealer.sock  the sealer's socket (sgd_sealer.py, a service the hub runs as root)
#   hub/                 the hub's database and cookie secret (root only)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"
COURSE_ID="sgd-from-scratch"
PREFIX="${SGDHUB_PREFIX:-/opt/sgd-hub}"
SETTINGS="$PREFIX/etc/settings.json"

die() { echo "setup.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (it creates system users, groups and /srv folders)"; }

setting() {  # setting KEY: a value from settings.json
    [ -f "$SETTINGS" ] || die "$SETTINGS missing: run '$0 install' first (same SGDHUB_PREFIX)"
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$SETTINGS" "$1"
}

proxy_deps() {
    # configurable-http-proxy, pinned in package-lock.json, into deploy/jupyterhub/node_modules
    need node "install Node.js (apt-get install nodejs npm)"
    need npm "install npm (apt-get install npm)"
    local want have=""
    want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packages"]["node_modules/configurable-http-proxy"]["version"])' "$HERE/package-lock.json")"
    [ -x "$HERE/node_modules/.bin/configurable-http-proxy" ] &&
        have="$("$HERE/node_modules/.bin/configurable-http-proxy" --version 2>/dev/null || true)"
    if [ "$have" != "$want" ]; then
        (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    "$HERE/node_modules/.bin/configurable-http-proxy" --version >/dev/null ||
        die "configurable-http-proxy does not run (see npm's output above)"
}

check_readable_by_users() {  # every user must be able to run the course's Python
    local py="$1"
    if ! runuser -u nobody -- "$py" -c 'import course, nbgrader, jupyterhub' 2>/dev/null; then
        die "users cannot run $py with the course installed. Every user needs read access to
  the venv, the checkout it was installed from ($SRC) and the Python it links to
  ($(readlink -f "$py")): give each folder above them o+x (e.g. chmod o+x /root) or
  install the course somewhere world-readable (e.g. clone it to /opt/sgd-from-scratch)."
    fi
    # A venv whose python is a copy (not a link) still needs its base Python's standard
    # library: without read access a user's Python silently takes another one (e.g. the
    # system's /usr/lib/python3.X), whose modules do not match the binary.
    local mine theirs
    mine="$("$py" -c 'import sys; print(sys.base_prefix)')"
    theirs="$(runuser -u nobody -- "$py" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)"
    [ "$mine" = "$theirs" ] ||
        die "users' $py takes its standard library from '$theirs', not $mine: give each folder
  above $mine o+x (e.g. chmod o+x /root) or make the venv from a Python every user can read."
}

install() {
    need_root
    need runuser "it is part of util-linux"
    need make "apt-get install make"
    local venv="${SGDHUB_VENV:-$SRC/.venv}"
    local exchange="${SGDHUB_EXCHANGE:-/srv/nbgrader/exchange}"
    local igroup="${SGDHUB_INSTRUCTOR_GROUP:-sgd-instructors}"
    local lgroup="${SGDHUB_LEARNER_GROUP:-sgd-learners}"

    # 1. The course's Python: the checkout's pinned venv (CPU torch, nbgrader, jupyterhub,
    #    the sgd-sandbox grading kernel). A no-op when it is current.
    if [ -z "${SGDHUB_VENV:-}" ]; then
        make -s -C "$SRC" venv
    fi
    [ -x "$venv/bin/jupyterhub-singleuser" ] && [ -x "$venv/bin/nbgrader" ] ||
        die "$venv has no jupyterhub/nbgrader: run 'make venv' in $SRC (or unset SGDHUB_VENV)"
    check_readable_by_users "$venv/bin/python"
    # The checkout is readable by every user (the course package lives there): keep the
    # instructor's sources, hidden tests included, out of their reach.
    chmod go-rwx "$SRC/solutions" "$SRC/tests" "$SRC/.git" 2>/dev/null || true
    chmod go-rwx "$SRC"/gradebook.db 2>/dev/null || true

    # 2. The proxy, pinned.
    proxy_deps

    # 3. Groups, exchange, folders.
    getent group "$igroup" >/dev/null || groupadd "$igroup"
    getent group "$lgroup" >/dev/null || groupadd "$lgroup"
    mkdir -p "$exchange" && chmod 1777 "$exchange"
    mkdir -p "$PREFIX/bin" "$PREFIX/etc/jupyter" "$PREFIX/etc/jupyter-instructor" "$PREFIX/hub" \
             "$PREFIX/run"
    chmod 0755 "$PREFIX" "$PREFIX/bin" "$PREFIX/etc" "$PREFIX/etc/jupyter" "$PREFIX/run"
    chmod 0700 "$PREFIX/hub"
    chown "root:$igroup" "$PREFIX/etc/jupyter-instructor"
    chmod 0750 "$PREFIX/etc/jupyter-instructor"

    # settings.json is root's: it may hold the gradebook's URL
    (umask 077 && python3 - "$SETTINGS" <<EOF
import json, sys
json.dump({
    "course_id": "$COURSE_ID",
    "source": "$SRC",
    "prefix": "$PREFIX",
    "venv": "$venv",
    "exchange": "$exchange",
    "bind_url": "${SGDHUB_BIND_URL:-http://:8000}",
    "hub_port": int("${SGDHUB_HUB_PORT:-8081}"),
    "proxy_api_port": int("${SGDHUB_PROXY_API_PORT:-8001}"),
    "proxy": "$HERE/node_modules/.bin/configurable-http-proxy",
    "instructor_group": "$igroup",
    "learner_group": "$lgroup",
    "learner_config": "$SRC/jupyter-config/learner",
    "sealer_socket": "$PREFIX/run/sgd-sealer.sock",
    "ssl_cert": "${SGDHUB_SSL_CERT:-}",
    "ssl_key": "${SGDHUB_SSL_KEY:-}",
    "cull_timeout": int("${SGDHUB_CULL_TIMEOUT:-3600}"),
    "cull_every": int("${SGDHUB_CULL_EVERY:-300}"),
    "mem_limit": "${SGDHUB_MEM_LIMIT-2G}",
    "cpu_limit": float("${SGDHUB_CPU_LIMIT:-1}"),
    "gradebook_db_url": "${SGDHUB_GRADEBOOK_DB_URL:-}",
}, open(sys.argv[1], "w"), indent=1)
EOF
    )
    chmod 0600 "$SETTINGS"
    if [ -n "${SGDHUB_SSL_CERT:-}" ]; then
        [ -r "$SGDHUB_SSL_CERT" ] && [ -r "${SGDHUB_SSL_KEY:-}" ] ||
            die "SGDHUB_SSL_CERT and SGDHUB_SSL_KEY must both name readable PEM files"
    fi

    # 4. nbgrader's settings for every user of this hub.
    cat > "$PREFIX/etc/jupyter/nbgrader_config.py" <<EOF
# Written by deploy/jupyterhub/setup.sh: the hub's exchange and course.
c = get_config()  # noqa: F821
import sys
c.Exchange.root = "$exchange"
c.CourseDirectory.course_id = "$COURSE_ID"
# submissions sealed by the hub's sealer (sgd_sealer.py, run as root) right after submit:
# owned by the instructor, stamped with the exchange's time; collect takes sealed ones
# only, refuses any changed since, and never follows a symlink (sgd_exchange.py)
sys.path.insert(0, "$HERE")
c.ExchangeFactory.submit = "sgd_exchange.PrivateSubmit"
c.ExchangeFactory.collect = "sgd_exchange.SealedCollect"
c.PrivateSubmit.sealer_socket = "$PREFIX/run/sgd-sealer.sock"
EOF
    # The instructors' gradebook (their servers and bin/nbgrader read this; learners cannot).
    (umask 027 && SGDHUB_GRADEBOOK_DB_URL="${SGDHUB_GRADEBOOK_DB_URL:-}" python3 - \
        "$PREFIX/etc/jupyter-instructor/nbgrader_config.py" <<'EOF'
import os, sys
url = os.environ["SGDHUB_GRADEBOOK_DB_URL"]
with open(sys.argv[1], "w") as f:
    f.write("# Written by deploy/jupyterhub/setup.sh: the instructors' gradebook.\n"
            "c = get_config()  # noqa: F821\n")
    if url:
        f.write(f"c.CourseDirectory.db_url = {url!r}\n")
    else:
        f.write("# nbgrader's default: gradebook.db in the course folder\n")
EOF
    )
    chown "root:$igroup" "$PREFIX/etc/jupyter-instructor/nbgrader_config.py"
    cat > "$PREFIX/bin/nbgrader" <<EOF
#!/bin/sh
# The course's nbgrader with this hub's exchange (written by deploy/jupyterhub/setup.sh).
JUPYTER_CONFIG_PATH="$PREFIX/etc/jupyter\${JUPYTER_CONFIG_PATH:+:\$JUPYTER_CONFIG_PATH}"
# instructors (only they can read it) also get the hub's gradebook
if [ -r "$PREFIX/etc/jupyter-instructor/nbgrader_config.py" ]; then
    JUPYTER_CONFIG_PATH="$PREFIX/etc/jupyter-instructor:\$JUPYTER_CONFIG_PATH"
fi
PATH="$venv/bin:\$PATH"
export JUPYTER_CONFIG_PATH PATH
exec "$venv/bin/nbgrader" "\$@"
EOF
    cat > "$PREFIX/bin/sgd-singleuser" <<EOF
#!/bin/sh
# A user's JupyterLab, spawned by the hub as that user. Instructors start in their
# course folder, where nbgrader_config.py (the grading safeguards) is read.
if [ -n "\${SGD_COURSE_DIR:-}" ]; then cd "\$SGD_COURSE_DIR" || exit 1; fi
exec "$venv/bin/jupyterhub-singleuser" "\$@"
EOF
    cat > "$PREFIX/bin/sgd-hub" <<EOF
#!/bin/sh
# Start the course's JupyterHub (written by deploy/jupyterhub/setup.sh).
cd "$PREFIX/hub" || exit 1
SGDHUB_SETTINGS="$SETTINGS"
PATH="$venv/bin:\$PATH"
export SGDHUB_SETTINGS PATH
exec "$venv/bin/jupyterhub" -f "$HERE/jupyterhub_config.py" "\$@"
EOF
    chmod 0755 "$PREFIX/bin/nbgrader" "$PREFIX/bin/sgd-singleuser" "$PREFIX/bin/sgd-hub"
    cat > "$PREFIX/etc/sgd-hub.service" <<EOF
[Unit]
Description=SGD from Scratch JupyterHub
After=network.target

[Service]
User=root
ExecStart=$PREFIX/bin/sgd-hub
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
    echo "installed: start the hub with $PREFIX/bin/sgd-hub" \
         "(or: cp $PREFIX/etc/sgd-hub.service /etc/systemd/system/ && systemctl enable --now sgd-hub)"
}

add_user() {  # add-user instructor|learner NAME
    need_root
    local role="${1:-}" name="${2:-}" group
    case "$role" in
        instructor) group="$(setting instructor_group)" ;;
        learner) group="$(setting learner_group)" ;;
        *) die "usage: $0 add-user instructor|learner NAME" ;;
    esac
    [ -n "$name" ] || die "usage: $0 add-user $role NAME"
    if id "$name" >/dev/null 2>&1; then
        usermod -a -G "$group" "$name"
    else
        useradd --create-home --shell /bin/bash --groups "$group" "$name"
    fi
    local home
    home="$(getent passwd "$name" | cut -d: -f6)"
    chmod 0700 "$home"                     # nobody reads another user's notebooks
    if [ "$role" = instructor ]; then
        # The instructor's course folder: nbgrader source (solutions/) and config, private.
        local course="$home/$COURSE_ID"
        if [ -e "$course" ]; then
            echo "$course exists: left as it is"
        else
            mkdir -p "$course"
            cp -r "$SRC/solutions" "$course/solutions"
            find "$course/solutions" -name .ipynb_checkpoints -prune -exec rm -rf {} +
            cp "$SRC/nbgrader_config.py" "$course/"
            chown -R "$name:" "$course"
            chmod 0700 "$course"
        fi
    fi
    echo "$role $name ready (set a password with: passwd $name)"
}

backup() {  # backup DEST
    need_root
    [ -n "${1:-}" ] || die "usage: $0 backup DEST"
    [ -f "$SETTINGS" ] || die "$SETTINGS missing: run '$0 install' first (same SGDHUB_PREFIX)"
    "$(setting venv)/bin/python" -I "$HERE/sgd_backup.py" --settings "$SETTINGS" "$1"
}

case "${1:-}" in
    install) install ;;
    add-user) shift; add_user "$@" ;;
    backup) shift; backup "$@" ;;
    proxy-deps) proxy_deps ;;
    *) echo "usage: $0 install | add-user instructor|learner NAME | backup DEST | proxy-deps" >&2
       exit 2 ;;
esac

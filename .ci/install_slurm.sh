#!/usr/bin/env bash
# Install what tests/test_slurm.py needs to start a one-node SLURM cluster on
# this machine (Debian 12, root, no systemd): slurmctld, slurmd, the SLURM
# client tools (sbatch, squeue, scancel, sinfo, scontrol, srun) and munge.
#
# Idempotent: does nothing (and touches no network) when everything is
# already installed. Exits non-zero when the install fails; .ci/run calls it as
#   bash .ci/install_slurm.sh || echo "SLURM install failed; slurm tests will skip"
# and the slurm tests then skip themselves.
#
# The daemons are NOT started here: the session-scoped pytest fixture in
# tests/slurm_cluster.py writes a throw-away slurm.conf into a temp dir,
# starts munged/slurmctld/slurmd itself and stops them again by pid file.
set -euo pipefail

PKGS=(slurmctld slurmd slurm-client munge)
BINS=(slurmctld slurmd munged sbatch squeue scancel sinfo scontrol srun)

have_all() {
    local b
    for b in "${BINS[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
    done
    return 0
}

if have_all; then
    echo "install_slurm: SLURM and munge already installed; nothing to do."
else
    if [ "$(id -u)" -ne 0 ]; then
        echo "install_slurm: not root and SLURM is missing; cannot install." >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_slurm: no apt-get on this machine; cannot install SLURM." >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # no systemd here: make sure package scripts do not try to start services
    POLICY=/usr/sbin/policy-rc.d
    CREATED_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod +x "$POLICY"
        CREATED_POLICY=1
    fi
    trap 'if [ "$CREATED_POLICY" = 1 ]; then rm -f "$POLICY"; fi' EXIT
    echo "install_slurm: installing ${PKGS[*]} ..."
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
    if ! have_all; then
        echo "install_slurm: packages installed but some binaries are missing." >&2
        exit 1
    fi
fi

# munge needs a key; the Debian package normally creates one, make sure.
if [ ! -s /etc/munge/munge.key ]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi

echo "install_slurm: $(slurmctld -V 2>/dev/null || echo 'slurmctld ?'), munge ready."

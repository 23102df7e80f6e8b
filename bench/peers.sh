# shellcheck shell=bash disable=SC2034,SC2154 # sourced: cmd, pdsh_append are read, tmp set by the caller
# bench/peers.sh: sourced by bench/fanout.sh. The ssh-based peers of distcomp on loopback:
# installs pdsh, parallel-ssh, clush, sshd and GNU time when missing; starts private sshd
# instances (fresh host key, fresh client key, never the system service, never ~/.ssh) listening
# on one loopback address per host, 127.0.1.1, 127.0.1.2, ... (host aliases n1, n2, ... in a
# generated ssh config); opens and closes the ControlMaster connections; builds each tool's
# command line. Expects from the caller: $tmp (private temp dir) and the array pids (every pid
# in it is stopped by the caller's cleanup, which also calls peers_cleanup first).

# One sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS is a compile-time constant), so
# 256 hosts take 16 sshd instances on the same port, 16 addresses each.
readonly PEERS_ADDRS_PER_SSHD=16
ssh_dir=""
ssh_port=""
ssh_cfg=""
ssh_cfg_cm=""
cm_hosts=0
pdsh_append=""
sshd_pids=()

# peers_install TOOL...: installs the Debian packages behind the tools that are missing.
peers_install() {
  local need=() sudo="" policy="" rc=0
  for t in "$@"; do
    case $t in
      pdsh) command -v pdsh >/dev/null || need+=(pdsh) ;;
      pssh) command -v parallel-ssh >/dev/null || need+=(pssh) ;;
      clush) command -v clush >/dev/null || need+=(clustershell) ;;
    esac
  done
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  { command -v ssh && command -v ssh-keygen; } >/dev/null || need+=(openssh-client)
  [ -x /usr/bin/time ] || need+=(time)
  command -v ss >/dev/null || need+=(iproute2)
  [ ${#need[@]} -eq 0 ] && return 0
  echo "installing ${need[*]} (apt-get)" >&2
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # openssh-server's postinst would start the system sshd (on every address, port 22): deny
  # service starts during the install, as Debian's policy-rc.d convention allows.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
  fi
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
    ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null; then
    rc=1
  fi
  [ -z "$policy" ] || $sudo rm -f "$policy"
  return $rc
}

# peer_addr I: the loopback address of host nI (1-based): 127.0.1.1 ... 127.0.1.250, 127.0.2.1 ...
peer_addr() { echo "127.0.$((($1 - 1) / 250 + 1)).$((($1 - 1) % 250 + 1))"; }

# peers_start_sshd COUNT: sshd for hosts n1..nCOUNT; writes the client configs $ssh_cfg (plain
# connections) and $ssh_cfg_cm (through the ControlMaster sockets) and hosts files for pssh.
peers_start_sshd() {
  local count=$1 instances g i first last conf user
  ssh_dir=$tmp/ssh
  mkdir -m 700 "$ssh_dir"
  user=$(id -un)
  [ -d /run/sshd ] || mkdir -p /run/sshd 2>/dev/null || sudo mkdir -p /run/sshd # privsep dir
  ssh-keygen -q -t ed25519 -N '' -C distcomp-bench-host -f "$ssh_dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C distcomp-bench-client -f "$ssh_dir/id"
  cp "$ssh_dir/id.pub" "$ssh_dir/authorized_keys"
  # Sessions get an empty HOME: bash, started by sshd for every command, reads ~/.bashrc, which
  # may cost more than the tools (root's `pyenv init` here: ~2 s per command). The remote side
  # then runs the login shell with `-c CMD` from a clean home, as distcomp's worker runs
  # `/bin/sh -c CMD` in a scrubbed environment.
  mkdir "$ssh_dir/home"
  ssh_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.1.1", 0)); print(s.getsockname()[1])')
  instances=$(((count + PEERS_ADDRS_PER_SSHD - 1) / PEERS_ADDRS_PER_SSHD))
  for ((g = 0; g < instances; g++)); do
    conf=$ssh_dir/sshd_config.$g
    first=$((g * PEERS_ADDRS_PER_SSHD + 1))
    last=$((first + PEERS_ADDRS_PER_SSHD - 1))
    [ "$last" -le "$count" ] || last=$count
    {
      for ((i = first; i <= last; i++)); do echo "ListenAddress $(peer_addr "$i"):$ssh_port"; done
      cat <<EOF
HostKey $ssh_dir/host_key
PidFile none
AuthorizedKeysFile $ssh_dir/authorized_keys
SetEnv HOME=$ssh_dir/home
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 4096
MaxSessions 4096
LoginGraceTime 300
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
LogLevel ERROR
EOF
    } >"$conf"
    /usr/sbin/sshd -D -f "$conf" -E "$ssh_dir/sshd.$g.log" &
    pids+=($!)
    sshd_pids+=($!)
  done
  for _ in $(seq 200); do
    [ "$(ss -Hltn "sport = :$ssh_port" | wc -l)" -ge "$count" ] && break
    sleep 0.05
  done
  if [ "$(ss -Hltn "sport = :$ssh_port" | wc -l)" -lt "$count" ]; then
    echo "sshd did not listen on $count addresses:" >&2
    cat "$ssh_dir"/sshd.*.log >&2
    return 1
  fi
  # Client side: host aliases nI, the fresh identity, no known_hosts, no prompts.
  {
    for ((i = 1; i <= count; i++)); do printf 'Host n%d\n  HostName %s\n' "$i" "$(peer_addr "$i")"; done
    cat <<EOF
Host *
  Port $ssh_port
  User $user
  IdentityFile $ssh_dir/id
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 120
  ControlMaster no
EOF
  } >"$ssh_dir/config.common"
  ssh_cfg=$ssh_dir/config
  ssh_cfg_cm=$ssh_dir/config-cm
  { cat "$ssh_dir/config.common" && echo "  ControlPath none"; } >"$ssh_cfg"
  # %n is the host as given on the command line (n1 ...): every tool passes it as is.
  { cat "$ssh_dir/config.common" && echo "  ControlPath $ssh_dir/cm-%n"; } >"$ssh_cfg_cm"
  for ((i = 1; i <= count; i++)); do echo "n$i"; done >"$ssh_dir/hosts-all"
}

# peers_open_masters COUNT LIMIT: one ControlMaster connection per host n1..nCOUNT (each an
# `ssh -MN` process in the background, stopped by `ssh -O exit` in peers_close_masters).
peers_open_masters() {
  local count=$1 limit=$2 i t0 up
  for ((i = 1; i <= count; i++)); do
    ssh -F "$ssh_cfg_cm" -MNn "n$i" </dev/null 2>>"$ssh_dir/masters.log" &
    pids+=($!)
  done
  cm_hosts=$count
  t0=$SECONDS
  while :; do
    up=0
    for ((i = 1; i <= count; i++)); do [ -S "$ssh_dir/cm-n$i" ] && up=$((up + 1)); done
    [ "$up" -eq "$count" ] && return 0
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
      echo "only $up of $count ControlMaster connections opened in ${limit}s" >&2
      head -5 "$ssh_dir/masters.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# peers_masters_alive: how many of the ControlMaster sockets still answer.
peers_masters_alive() {
  local i up=0
  for ((i = 1; i <= cm_hosts; i++)); do
    ssh -F "$ssh_cfg_cm" -O check "n$i" 2>/dev/null && up=$((up + 1))
  done
  echo "$up"
}

peers_close_masters() {
  local i
  for ((i = 1; i <= cm_hosts; i++)); do
    [ -S "$ssh_dir/cm-n$i" ] && ssh -F "$ssh_cfg_cm" -O exit "n$i" 2>/dev/null
  done
  cm_hosts=0
  return 0
}

peers_cleanup() { [ -z "$ssh_dir" ] || peers_close_masters; }

# peer_cmd TOOL N CMD: sets the array cmd (and pdsh_append, exported as PDSH_SSH_ARGS_APPEND by
# the caller) to run CMD on n1..nN with TOOL at fanout N. TOOL: pdsh, pssh, clush, or ssh (N bare
# ssh processes at once); a -cm suffix goes through the ControlMaster connections.
peer_cmd() {
  local tool=${1%-cm} n=$2 c=$3 cfg=$ssh_cfg
  [ "$tool" = "$1" ] || cfg=$ssh_cfg_cm
  pdsh_append="-F $cfg"
  head -n "$n" "$ssh_dir/hosts-all" >"$ssh_dir/hosts-$n"
  case $tool in
    pdsh) cmd=(pdsh -R ssh -S -f "$n" -w "n[1-$n]" "$c") ;;
    pssh) cmd=(parallel-ssh -h "$ssh_dir/hosts-$n" -p "$n" -t 0 -x "-F $cfg" -P "$c") ;;
    clush) cmd=(clush -f "$n" -t 120 -o "-F $cfg" -w "n[1-$n]" "$c") ;;
    ssh)
      # shellcheck disable=SC2016
      cmd=(bash -c 'rc=0; ps=(); for ((i = 1; i <= $2; i++)); do ssh -F "$1" -n "n$i" "$3" & ps+=($!); done
        for p in "${ps[@]}"; do wait "$p" || rc=1; done; exit $rc' bare-ssh "$cfg" "$n" "$c")
      ;;
    *)
      echo "unknown peer tool $1" >&2
      return 1
      ;;
  esac
}

# peer_label TOOL: how the tool is named in the tables.
peer_label() {
  local l
  case ${1%-cm} in
    pdsh) l="pdsh -R ssh" ;;
    pssh) l="parallel-ssh -P" ;;
    clush) l="clush" ;;
    ssh) l="bare ssh x N (ssh floor)" ;;
  esac
  [ "${1%-cm}" = "$1" ] || l="$l +CM"
  echo "$l"
}

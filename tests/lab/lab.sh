#!/bin/sh
# lab.sh: the deployment lab by hand (as root): three roomd hosts behind
# HAProxy with one Redis, each in its own network namespace (see netlab.py
# and tests/README.md, "The deployment lab").
#   lab.sh up [--sentinel] [DIR]
#                     build it and start everything (logs and configs in DIR,
#                     default /tmp/roomd-lab); ROOMD_BIN picks the binary;
#                     --sentinel: Redis is a master, two replicas, three sentinels
#   lab.sh status     the namespaces, their addresses and processes
#   lab.sh down       kill every lab process and remove the namespaces
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${ROOMD_BIN:-}" ]; then
	for b in "$here/../../src/roomd" "$here/../../build/normal/src/roomd"; do
		[ -x "$b" ] && ROOMD_BIN=$b && break
	done
fi
export ROOMD_BIN
exec /usr/bin/python3 "$here/netlab.py" "$@"

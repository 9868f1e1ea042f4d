#!/bin/sh
# Build a minimal root filesystem from Debian's busybox-static: no download beyond that package.
# usage: bundles/mkrootfs.sh DIR
set -eu
dir=${1:?usage: $0 DIR}
busybox=${BUSYBOX:-/bin/busybox}  # Debian's busybox-static puts a static binary there
[ -x "$busybox" ] || { echo "$0: $busybox not found: apt-get install busybox-static" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp root home/user run var
chmod 1777 tmp
cp "$busybox" bin/busybox
for applet in $(./bin/busybox --list-full); do
    [ -e "$applet" ] || ln -s /bin/busybox "$applet"
done
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
P
cat > etc/group <<'G'
root:x:0:
tty:x:5:
user:x:1000:
nogroup:x:65534:
G
echo "127.0.0.1 localhost" > etc/hosts
: > etc/resolv.conf

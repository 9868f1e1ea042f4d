#!/bin/sh
# Install the secfilt-runtime bundle of this image onto a node, through a directory of the node
# mounted into the container (the image's entrypoint):
#
#   podman run --rm -v /usr/local:/host IMAGE        # -> /usr/local/bin/secfilt-runtime
#
# usage: install.sh [HOST_DIR]   (default /host). SECFILT_PREFIX is HOST_DIR's path on the node
# (default /usr/local): the launcher refers to the bundle by that path. Files go to
# HOST_DIR/lib/secfilt-runtime/ and HOST_DIR/bin/ (secfilt-runtime, secfilt); each is replaced
# with a rename, so an engine calling the runtime meanwhile runs the old or the new one, never half.
set -eu
host=${1:-/host}
prefix=${SECFILT_PREFIX:-/usr/local}
bundle=/opt/secfilt-runtime
case $prefix in /*) ;; *) echo "install.sh: SECFILT_PREFIX must be absolute: $prefix" >&2; exit 2;; esac
[ -d "$host" ] || { echo "install.sh: $host is not a directory: mount the node's $prefix there" >&2; exit 2; }
mkdir -p "$host/lib" "$host/bin"
new=$host/lib/.secfilt-runtime.new.$$
old=$host/lib/.secfilt-runtime.old.$$
trap 'rm -rf "$new" "$host"/bin/.*.new.$$' EXIT
cp -a "$bundle" "$new"
rm -f "$new"/bin/*.in
# the launchers (secfilt-runtime, secfilt) refer to the bundle by its path on the node
for template in "$bundle"/bin/*.in; do
    name=$(basename "$template" .in)
    sed "s#@PREFIX@#$prefix/lib/secfilt-runtime#g" "$template" > "$host/bin/.$name.new.$$"
    chmod 755 "$host/bin/.$name.new.$$"
done
if [ -e "$host/lib/secfilt-runtime" ]; then mv "$host/lib/secfilt-runtime" "$old"; fi
mv "$new" "$host/lib/secfilt-runtime"
for template in "$bundle"/bin/*.in; do
    name=$(basename "$template" .in)
    mv "$host/bin/.$name.new.$$" "$host/bin/$name"
    echo "installed $prefix/bin/$name"
done
rm -rf "$old"

#!/usr/bin/env bash
# build-image.sh: build the e2e Redis image (default rcluster-redis:local)
# offline, from the redis-server Debian installed on this machine. Nothing is
# pulled from any registry: the root filesystem is assembled from the host's
# binary, every library ldd lists and the dynamic loader, then fed to
# `docker import`.
#
# Environment:
#   IMAGE  image name (default rcluster-redis:local)
#   FORCE  1 rebuilds even when the image already matches the host binary
#
# Idempotent: the image carries a label with the sha256 of the host's
# redis-server and of this script; when an image with the same label exists,
# nothing is done.
# Concurrent runs are serialised with a lock file.
set -euo pipefail

IMAGE="${IMAGE:-rcluster-redis:local}"
FORCE="${FORCE:-0}"
SERVER=/usr/bin/redis-server
CLI=/usr/bin/redis-cli
LABEL=rcluster.image.key

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running? are you in the docker group?)"

if [[ ! -x "$SERVER" ]]; then
	[[ "$(id -u)" == 0 ]] || die "$SERVER missing; install it with: sudo apt-get install -y redis-server"
	log "$SERVER missing: installing redis-server with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >/dev/null \
		|| { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server >/dev/null; }
fi

# Serialise concurrent builds (parallel test binaries call this script).
lockfile="${TMPDIR:-/tmp}/rcluster-build-image.lock"
exec 9>"$lockfile"
flock -w 120 9 || die "timed out waiting for $lockfile"

# The key covers the binary and this script, so editing either rebuilds.
sum="$(cat "$SERVER" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ "$FORCE" != 1 ]]; then
	have="$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null || true)"
	if [[ "$have" == "$sum" ]]; then
		log "$IMAGE is up to date (key ${sum:0:12})"
		exit 0
	fi
fi

old_id="$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

root="$(mktemp -d "${TMPDIR:-/tmp}/rcluster-image.XXXXXX")"
trap 'rm -rf "$root"' EXIT

# copy_with_libs copies a binary and everything its dynamic loader needs,
# keeping absolute paths and dereferencing symlinks.
copy_with_libs() {
	local bin="$1" lib
	cp --parents -L "$bin" "$root"
	# ldd lines: "libx.so => /path (addr)", "/lib64/ld-linux... (addr)", "linux-vdso.so.1 (addr)".
	while read -r lib; do
		[[ -e "$root$lib" ]] || cp --parents -L "$lib" "$root"
	done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

copy_with_libs "$SERVER"
if [[ -x "$CLI" ]]; then
	copy_with_libs "$CLI"
fi

mkdir -p "$root/etc" "$root/data" "$root/tmp"
chmod 1777 "$root/tmp"
chown 999:999 "$root/data"
chmod 0755 "$root/data"
printf 'root:x:0:0:root:/root:/sbin/nologin\nredis:x:999:999:redis:/data:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nredis:x:999:\n' >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"

version="$("$SERVER" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
log "importing $IMAGE (redis $version, $(du -sh "$root" | cut -f1))"
tar -C "$root" --numeric-owner -c . | docker import \
	--change 'ENTRYPOINT ["/usr/bin/redis-server"]' \
	--change 'WORKDIR /data' \
	--change 'USER 999:999' \
	--change "LABEL $LABEL=$sum" \
	--change "LABEL rcluster.redis.version=$version" \
	--message "rcluster e2e redis $version from $SERVER" \
	- "$IMAGE" >/dev/null

docker run --rm "$IMAGE" --version >/dev/null || die "$IMAGE does not run"
# Drop the image this one replaced (left dangling); fails harmlessly when a
# container still uses it.
if [[ -n "$old_id" && "$old_id" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]]; then
	docker image rm "$old_id" >/dev/null 2>&1 || true
fi
log "built $IMAGE"

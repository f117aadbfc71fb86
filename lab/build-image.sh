#!/bin/bash
# build-image.sh: build (or reuse) the NFS lab's guest image: a Debian kernel plus one
# uncompressed initramfs made from `debootstrap --variant=minbase bookworm`.
#
# Idempotent and cached outside the repo, in two layers:
#   base-<key>/   vmlinuz + rootfs.cpio   key = kernel package + version, package list, BASE_RECIPE
#   image-<key>/  vmlinuz + lab.cpio      key = base key + the guest files baked in (lab/guest/*)
# lab.cpio is rootfs.cpio with a small second cpio (init, lablib) appended: the kernel unpacks
# concatenated archives in order, so editing lablib only costs a re-pack of the overlay.
# The nfsha binary is NOT baked in: run.sh puts it in the 9p share at each run.
#
# Env: NFSHA_LAB_CACHE (default /var/cache/nfsha-lab), NFSHA_LAB_EXTRA_PACKAGES (comma list),
# NFSHA_LAB_KERNEL (6.1 or 6.12, see below).
# Prints the image directory on the last line of stdout. Exit status non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${NFSHA_LAB_CACHE:-/var/cache/nfsha-lab}
SUITE=bookworm
MIRROR=${NFSHA_LAB_MIRROR:-http://deb.debian.org/debian}
# Bump when the recipe of the base layer changes (module subset, slimming...).
BASE_RECIPE=3
PACKAGES=nfs-kernel-server,nfs-common,rpcbind,autofs,iproute2,nftables,btrfs-progs,e2fsprogs,procps,util-linux,kmod,psmisc,iputils-ping,iputils-arping,fio,strace,rsync,jq
if [ -n "${NFSHA_LAB_EXTRA_PACKAGES:-}" ]; then PACKAGES="$PACKAGES,$NFSHA_LAB_EXTRA_PACKAGES"; fi

log() { echo "build-image: $*" >&2; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

need_apt=()
command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v cpio >/dev/null || need_apt+=(cpio)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

# NFSHA_LAB_KERNEL: 6.1 (default: what linux-image-amd64 depends on, Debian 12's kernel) or
# 6.12 (Debian 12's newer kernel package, linux-image-6.12.*+deb12-amd64-unsigned: the
# MOVE_MOUNT_BENEATH / NFS sysfs generation that Debian 13, RHEL 10 and Ubuntu 24.04 run).
KERNEL=${NFSHA_LAB_KERNEL:-6.1}
resolve_kernel() {
    case $KERNEL in
        6.1) apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' ;;
        6.12) apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' 2>/dev/null \
                | awk '{print $1}' | sort -V | tail -1 ;;
        *) return 1 ;;
    esac
}
case $KERNEL in 6.1 | 6.12) ;; *) log "NFSHA_LAB_KERNEL=$KERNEL: use 6.1 or 6.12"; exit 1 ;; esac
KPKG=$(resolve_kernel)
if [ -z "$KPKG" ]; then
    apt-get update -qq >&2
    KPKG=$(resolve_kernel)
fi
[ -n "$KPKG" ] || { log "cannot resolve the $KERNEL kernel package"; exit 1; }
KVER_PKG=$(apt-cache show "$KPKG" | awk '/^Version:/{print $2; exit}')
KREL=${KPKG#linux-image-}
KREL=${KREL%-unsigned}

base_key=$(printf '%s\n' "$KPKG" "$KVER_PKG" "$PACKAGES" "$SUITE" "$BASE_RECIPE" | sha256sum | cut -c1-16)
guest_hash=$(cd "$HERE/guest" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
image_key=$(printf '%s\n' "$base_key" "$guest_hash" | sha256sum | cut -c1-16)
BASE=$CACHE/base-$base_key
IMAGE=$CACHE/image-$image_key
mkdir -p "$CACHE"

if [ -f "$IMAGE/lab.cpio" ] && [ -f "$IMAGE/vmlinuz" ]; then
    log "cached image $IMAGE ($(elapsed) s)"
    echo "$IMAGE"
    exit 0
fi

exec 9>"$CACHE/.lock"
flock 9

if [ ! -f "$BASE/rootfs.cpio" ]; then
    log "building base layer $BASE ($KPKG $KVER_PKG)"
    work=$CACHE/work-$base_key
    rm -rf "$work"
    mkdir -p "$work" "$CACHE/debs" "$CACHE/kernel-debs"
    deb=$(ls "$CACHE/kernel-debs/${KPKG}_${KVER_PKG}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        (cd "$CACHE/kernel-debs" && apt-get download "$KPKG" >&2 2>/dev/null) || (cd "$CACHE/kernel-debs" && apt-get download "$KPKG" >&2)
        deb=$(ls "$CACHE/kernel-debs/${KPKG}"_*.deb | head -1)
    fi
    dpkg-deb -x "$deb" "$work/kernel"
    log "kernel unpacked ($(elapsed) s)"
    debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$PACKAGES" \
        "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    log "debootstrap done ($(elapsed) s)"
    R=$work/rootfs
    rm -rf "$R"/usr/share/{doc,man,info,locale} "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin \
        "$R"/var/cache/apt/archives/*.deb
    M=$work/kernel/lib/modules/$KREL
    D=$R/lib/modules/$KREL
    mkdir -p "$D/kernel/drivers/block" "$D/kernel/drivers/net" "$D/kernel/drivers/char"
    cp "$M"/modules.order "$M"/modules.builtin* "$D"/
    for sub in fs net crypto lib arch block mm virt; do
        [ -d "$M/kernel/$sub" ] && cp -a "$M/kernel/$sub" "$D/kernel/"
    done
    cp -a "$M/kernel/drivers/virtio" "$D/kernel/drivers/"
    [ -d "$M/kernel/drivers/char/hw_random" ] && cp -a "$M/kernel/drivers/char/hw_random" "$D/kernel/drivers/char/"
    # Modules are plain .ko on 6.1 and .ko.xz on 6.12, and 6.12 builds virtio_console in
    # (modules.builtin): copy what is there.
    for f in char/virtio_console block/virtio_blk block/loop net/veth net/dummy; do
        for k in "$M/kernel/drivers/$f".ko*; do [ -f "$k" ] && cp "$k" "$D/kernel/drivers/${f%/*}/"; done
    done
    chroot "$R" /sbin/depmod -a "$KREL"
    # Quiet, fast services: nothing is started by dpkg in a chroot, and there is no systemd at run time.
    mkdir -p "$R/mnt/host" "$R/var/lab"
    (cd "$R" && find . -xdev | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/rootfs.cpio"
    mkdir -p "$BASE.tmp"
    cp "$work/kernel/boot/vmlinuz-$KREL" "$BASE.tmp/vmlinuz"
    mv "$work/rootfs.cpio" "$BASE.tmp/rootfs.cpio"
    printf 'kernel=%s %s\npackages=%s\n' "$KPKG" "$KVER_PKG" "$PACKAGES" >"$BASE.tmp/INFO"
    rm -rf "$BASE"
    mv "$BASE.tmp" "$BASE"
    rm -rf "$work"
    log "base layer built ($(elapsed) s)"
fi

log "packing image $IMAGE (guest files $guest_hash)"
ov=$(mktemp -d)
trap 'rm -rf "$ov"' EXIT
install -m 0755 "$HERE/guest/init" "$ov/init"
mkdir -p "$ov/usr/local/lib/nfsha-lab"
for f in "$HERE"/guest/*; do
    [ "$(basename "$f")" = init ] && continue
    install -m 0755 "$f" "$ov/usr/local/lib/nfsha-lab/"
done
mkdir -p "$IMAGE.tmp"
cp "$BASE/vmlinuz" "$IMAGE.tmp/vmlinuz"
{
    cat "$BASE/rootfs.cpio"
    (cd "$ov" && find . | LC_ALL=C sort | cpio -o -H newc --quiet)
} >"$IMAGE.tmp/lab.cpio"
cp "$BASE/INFO" "$IMAGE.tmp/INFO"
echo "guest=$guest_hash" >>"$IMAGE.tmp/INFO"
rm -rf "$IMAGE"
mv "$IMAGE.tmp" "$IMAGE"
# Keep only the newest few images.
ls -dt "$CACHE"/image-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
log "image ready ($(elapsed) s)"
echo "$IMAGE"

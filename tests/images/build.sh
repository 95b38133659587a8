#!/usr/bin/env bash
# Builds the database images the tests run, from Debian's packages (no registry is reachable):
# one Debian 12 root file system made by debootstrap with mariadb-server 10.11, postgresql 15 and
# busybox-static, imported twice, each time with its server's entrypoint. The entrypoints honour
# the official images' MARIADB_* and POSTGRES_* variables and arguments, so production runs the
# official images with the same settings (docs/design/databases.md).
#
# Cached twice: the engine keeps the images (tagged, with this build's key in their environment),
# and the root file system's archive stays in $ALVEOLE_IMAGE_CACHE, keyed by the digest of this
# script and the entrypoints. Nothing is rebuilt unless one of them changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${ALVEOLE_IMAGE_CACHE:-/var/cache/alveole-ci}"
key="$(cat "$here/build.sh" "$here"/*-entrypoint.sh | sha256sum | cut -c1-16)"
mariadb_tag="alveole-test/mariadb:10.11"
postgres_tag="alveole-test/postgresql:15"

built() {
    docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$1" 2>/dev/null \
        | grep -qx "ALVEOLE_IMAGE_BUILD=$key"
}
if built "$mariadb_tag" && built "$postgres_tag"; then
    echo "database images up to date ($key)"
    exit 0
fi

archive="$cache/databases-$key.tar"
if [ ! -s "$archive" ]; then
    mkdir -p "$cache"
    root="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    # No server starts inside the chroot, and postgresql-common makes no cluster: each
    # container's entrypoint makes its own data directory at first start.
    mkdir -p "$root/usr/sbin" "$root/etc/postgresql-common"
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    echo "create_main_cluster = false" > "$root/etc/postgresql-common/createcluster.conf"
    debootstrap --variant=minbase \
        --include=mariadb-server,mariadb-client,postgresql-15,busybox-static \
        bookworm "$root" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 30 "$cache/debootstrap.log"; exit 1; }
    rm -f "$root/usr/sbin/policy-rc.d"
    # What the servers write at run time, owned by their users; the data directories are
    # volumes, which the engine fills from these (owner and mode included) when first mounted.
    rm -rf "$root/var/lib/mysql" "$root/var/lib/postgresql/15" "$root/var/cache/apt/archives/"*.deb \
        "$root/var/lib/apt/lists/"*
    chroot "$root" sh -c '
        install -d -o mysql -g mysql -m 0755 /var/lib/mysql /run/mysqld
        install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
        install -d -o postgres -g postgres -m 2775 /run/postgresql
        ln -sf /bin/busybox /usr/local/bin/httpd
        ln -sf /bin/busybox /usr/local/bin/nc'
    install -m 0755 "$here/mariadb-entrypoint.sh" "$root/usr/local/bin/mariadb-entrypoint.sh"
    install -m 0755 "$here/postgresql-entrypoint.sh" "$root/usr/local/bin/postgresql-entrypoint.sh"
    tar -C "$root" -cf "$archive.partial" .
    mv "$archive.partial" "$archive"
    rm -rf "$root"
    trap - EXIT
fi
# Older archives of this cache are for builds that no longer exist.
find "$cache" -maxdepth 1 -name 'databases-*.tar' ! -name "databases-$key.tar" -delete

docker import \
    --change "ENV ALVEOLE_IMAGE_BUILD=$key" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/usr/local/bin/mariadb-entrypoint.sh"]' \
    --change 'CMD ["mariadbd"]' \
    --change 'USER mysql' \
    "$archive" "$mariadb_tag" >/dev/null
docker import \
    --change "ENV ALVEOLE_IMAGE_BUILD=$key" \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'ENTRYPOINT ["/usr/local/bin/postgresql-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change 'USER postgres' \
    "$archive" "$postgres_tag" >/dev/null
echo "database images built ($key)"

#!/usr/bin/env bash
# Starts LemonLDAP::NG (Debian's packages) on loopback for the identity-provider tests: its
# portal behind nginx over FastCGI, as the Debian package sets it up, with its own state under
# /var/lib/alveole-llng so that the machine's own LemonLDAP::NG, if any, is left alone.
#
# The portal is its OpenID Connect provider, issuer http://127.0.0.1:8470/ (with the trailing
# slash LemonLDAP::NG puts there), authentication by its Demo module (dwho, rtyler, msmith;
# each one's password is its login), and two groups of its own: coop-admins (dwho) and board
# (rtyler). The tests add their relying parties (tests/common/src/lemonldap.rs). Safe to run
# again: a running instance is stopped first.
set -euo pipefail
port="${ALVEOLE_LEMONLDAP_PORT:-8470}"
root=/var/lib/alveole-llng
etc=/etc/alveole-llng
run=/run/alveole-llng

for pid in "$run/nginx.pid" "$run/fastcgi.pid"; do
    if [ -s "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
done
for _ in $(seq 1 50); do
    pgrep -f "alveole-llng" >/dev/null || break
    sleep 0.1
done
rm -rf "$root" "$run"
mkdir -p "$etc" "$run" "$root"/{conf,sessions/lock,psessions/lock,notifications,cache,captcha}
chown -R www-data:www-data "$root" "$run"

# The signing key of the provider's ID tokens (RS256).
openssl genrsa -out "$etc/oidc.key" 2048 2>/dev/null
openssl rsa -in "$etc/oidc.key" -pubout -out "$etc/oidc.pub" 2>/dev/null

# No local cache of the configuration: with it, the portal would see the tests' new
# configuration versions only after ten minutes; this way it checks every second.
cat >"$etc/lemonldap-ng.ini" <<INI
[all]
logLevel = warn
checkTime = 1
[configuration]
type = File
dirName = $root/conf
[portal]
staticPrefix = /static
templateDir = /usr/share/lemonldap-ng/portal/templates
languages = en, fr
[handler]
status = 0
useRedirectOnError = 1
INI

python3 - "$root" "$etc" "$port" <<'PY'
import json, sys
root, etc, port = sys.argv[1:]
conf = json.load(open("/var/lib/lemonldap-ng/conf/lmConf-1.json"))
def moved(value):
    return json.loads(json.dumps(value).replace("/var/lib/lemonldap-ng", root))
for key in ("globalStorageOptions", "persistentStorageOptions", "localSessionStorageOptions",
            "notificationStorageOptions"):
    conf[key] = moved(conf[key])
portal = f"http://127.0.0.1:{port}/"
conf.update({
    "cfgNum": 1,
    "cfgAuthor": "alveole tests",
    "portal": portal,
    # The portal is reached by address: its cookie's domain is that address.
    "domain": "127.0.0.1",
    "securedCookie": 0,
    # No self-registration nor password change (they need a mail server).
    "registerDB": "Null",
    "passwordDB": "Null",
    "locationRules": {"127.0.0.1": {"default": "accept"}},
    "issuerDBOpenIDConnectActivation": 1,
    "oidcServicePrivateKeySig": open(f"{etc}/oidc.key").read(),
    "oidcServicePublicKeySig": open(f"{etc}/oidc.pub").read(),
    "oidcServiceKeyIdSig": "alveole-tests",
    "groups": {"coop-admins": '$uid eq "dwho"', "board": '$uid eq "rtyler"'},
    "macros": {**conf.get("macros", {}), "mail_verified": "1"},
    "oidcRPMetaDataOptions": {},
    "oidcRPMetaDataExportedVars": {},
    "oidcRPMetaDataOptionsExtraClaims": {},
})
json.dump(conf, open(f"{root}/conf/lmConf-1.json", "w"), indent=1)
PY
chown -R www-data:www-data "$root"

cat >"$etc/nginx.conf" <<NGINX
worker_processes 1;
pid $run/nginx.pid;
error_log $run/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  include /etc/nginx/mime.types;
  client_body_temp_path $run/body;
  fastcgi_temp_path $run/fastcgi;
  proxy_temp_path $run/proxy;
  uwsgi_temp_path $run/uwsgi;
  scgi_temp_path $run/scgi;
  server {
    listen 127.0.0.1:$port;
    root /usr/share/lemonldap-ng/portal/htdocs/;
    if (\$uri !~ ^/((static|javascript|favicon).*|.*\.psgi)) {
      rewrite ^/(.*)\$ /index.psgi/\$1 break;
    }
    location ~ ^(?<sc>/.*\.psgi)(?:\$|/) {
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:$run/fastcgi.sock;
      fastcgi_param HTTP_HOST \$host:\$server_port;
      fastcgi_param LLTYPE psgi;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_split_path_info ^(.*\.psgi)(/.*)\$;
      fastcgi_param PATH_INFO \$fastcgi_path_info;
    }
    location /static/ { alias /usr/share/lemonldap-ng/portal/htdocs/static/; }
    location /javascript/ { alias /usr/share/javascript/; }
  }
}
NGINX

LLNG_DEFAULTCONFFILE="$etc/lemonldap-ng.ini" LLNG_DEFAULTLOGGER=Lemonldap::NG::Common::Logger::Std \
    setsid /usr/sbin/llng-fastcgi-server -u www-data -g www-data -n 2 \
    -p "$run/fastcgi.pid" -s "$run/fastcgi.sock" >"$run/fastcgi.log" 2>&1 </dev/null &
for _ in $(seq 1 100); do
    [ -S "$run/fastcgi.sock" ] && break
    sleep 0.1
done
nginx -c "$etc/nginx.conf"
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/.well-known/openid-configuration" >/dev/null 2>&1; then
        echo "LemonLDAP::NG answers at http://127.0.0.1:$port/"
        exit 0
    fi
    sleep 0.2
done
echo "LemonLDAP::NG did not start; its logs:" >&2
cat "$run/fastcgi.log" "$run/nginx-error.log" >&2 || true
exit 1

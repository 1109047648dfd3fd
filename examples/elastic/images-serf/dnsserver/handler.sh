#!/bin/sh
# One hosts file per member (ADDR ROLE, ADDR NODE), dnsmasq reloaded, frontservers told.
apps=0
tab=$(printf '\t')
while IFS="$tab" read -r name addr role tags; do
  case "$SERF_EVENT" in
    member-join|member-update)
      printf '%s %s\n%s %s\n' "$addr" "$role" "$addr" "$name" > "/etc/dnsmasq-docker/.$name"
      mv "/etc/dnsmasq-docker/.$name" "/etc/dnsmasq-docker/$name" ;;
    member-leave|member-failed)
      rm -f "/etc/dnsmasq-docker/$name" ;;
  esac
  if [ "$role" = appserver ]; then apps=1; fi
done
kill -HUP "$(cat /run/dnsmasq.pid)"
if [ "$apps" = 1 ]; then serf event frontserver_reload; fi

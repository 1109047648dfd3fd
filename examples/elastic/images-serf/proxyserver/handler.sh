#!/bin/sh
# hipache's contract: frontend:localhost = [frontserver, http://ADDR:8080, ...].
tab=$(printf '\t')
while IFS="$tab" read -r name addr role tags; do
  [ "$role" = frontserver ] || continue
  url="http://$addr:8080"
  case "$SERF_EVENT" in
    member-join)
      redis-cli lrange frontend:localhost 0 -1 | grep -qxF "$url" \
        || redis-cli rpush frontend:localhost "$url" >/dev/null ;;
    member-leave|member-failed)
      redis-cli lrem frontend:localhost 0 "$url" >/dev/null ;;
  esac
done
exec /etc/serf/render.sh

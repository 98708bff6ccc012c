# Shared by the bench scripts (sourced, not run): waiting for a server they started.

# wait_port PORT: returns once something accepts TCP connections on 127.0.0.1:PORT (a server
# that starts listening tells nobody), or fails after 10 s.
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "the server did not open port $1" >&2
  return 1
}

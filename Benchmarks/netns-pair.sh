# Sourced by the benchmarks that cross a network (root): two network
# namespaces "$s" and "$c" joined by a veth pair, $1.1 in "$s" and $1.2 in
# "$c" (PREFIX is three octets, e.g. 10.199.0), named by the calling
# script's pid so runs never share one. At exit it kills only the processes
# inside its own namespaces, deletes them and removes "$work".
#   work=$(mktemp -d); source Benchmarks/netns-pair.sh 10.199.0
tag=$2$$
s=fq${tag}s c=fq${tag}c
netns_cleanup() {
  for ns in $s $c; do
    for pid in $(ip netns pids $ns 2>/dev/null); do kill -9 $pid 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$work"
}
trap netns_cleanup EXIT
ip netns add $s && ip netns add $c
ip link add fq${tag}a netns $s type veth peer name fq${tag}b netns $c
ip -n $s addr add $1.1/30 dev fq${tag}a && ip -n $c addr add $1.2/30 dev fq${tag}b
for pair in "$s fq${tag}a" "$c fq${tag}b"; do set -- $pair; ip -n $1 link set $2 up; ip -n $1 link set lo up; done
# A veth end reports carrier a moment after both ends are up; UCX, unlike a
# TCP connect, does not retry a destination that is unreachable until then.
for pair in "$s fq${tag}a" "$c fq${tag}b"; do
  set -- $pair
  for _ in $(seq 250); do ip -n $1 -o link show dev $2 | grep -q LOWER_UP && break; sleep 0.02; done
done

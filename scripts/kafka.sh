#!/usr/bin/env bash
# A real Apache Kafka broker (pinned in scripts/kafka/pom.xml) on 127.0.0.1, from Maven Central jars, in
# KRaft mode: one process that is both broker and controller.
#
#   scripts/kafka.sh start    fetch the jars once, format the storage once, start, wait until it answers
#   scripts/kafka.sh stop     stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh restart
#   scripts/kafka.sh status
#
# KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093) and KAFKA_HOME (.cache/kafka in the repository) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KAFKA_HOME=${KAFKA_HOME:-$ROOT/.cache/kafka}
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
LIBS=${KAFKA_LIBS:-$KAFKA_HOME/libs}
DATA=$KAFKA_HOME/data-$PORT
LOGS=$KAFKA_HOME/logs-$PORT
PIDFILE=$KAFKA_HOME/broker-$PORT.pid
CONFIG=$KAFKA_HOME/server-$PORT.properties
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)

fetch() {
  if [ -f "$LIBS/kafka_2.13-$VERSION.jar" ]; then return; fi
  echo "kafka: resolving Apache Kafka $VERSION from Maven Central" >&2
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime
}

java_run() { java -Xms256m -Xmx1g -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" \
  -cp "$LIBS/*" "$@"; }

configure() {
  mkdir -p "$DATA" "$LOGS"
  cat > "$CONFIG" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=1
PROPS
  if [ ! -f "$DATA/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$CONFIG" >/dev/null
  fi
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

wait_ready() {
  for _ in $(seq 1 120); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && grep -q "Kafka Server started" "$LOGS/broker.log" 2>/dev/null; then
      return 0
    fi
    running || { echo "kafka: the broker exited; see $LOGS/broker.log" >&2; tail -n 30 "$LOGS/broker.log" >&2 || true; return 1; }
    sleep 0.5
  done
  echo "kafka: the broker did not come up in 60 s; see $LOGS/broker.log" >&2
  return 1
}

start() {
  if running; then echo "kafka: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2; return; fi
  fetch
  configure
  : > "$LOGS/broker.log"
  nohup java -Xms256m -Xmx1g -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" > "$LOGS/stdout.log" 2>&1 &
  echo $! > "$PIDFILE"
  wait_ready
  echo "kafka: Apache Kafka $VERSION on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return; fi
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "kafka: stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running; then echo "running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"; else echo "stopped"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac

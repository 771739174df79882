//! spate-net: the Kafka server. Listeners, the connection loop, one handler per Kafka API and
//! the zero-copy fetch writer.

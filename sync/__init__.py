"""Everything that touches the network: the sync daemon (outbox → MQTT/HTTPS, signed
downlink cache, WeCom) and the reference HR connector. It never touches the camera or the
microphone, and never deletes a record the HR side has not acknowledged."""

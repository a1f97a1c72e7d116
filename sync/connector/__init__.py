"""The reference HR-side connector (`interview-hr`): receives results, events, clips and
heartbeats from the kiosks, stores them de-duplicated, forwards them to the EHR, and signs
what is sent down to the kiosks. It never acknowledges a message it has not stored."""

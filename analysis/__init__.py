"""Offline analysis of an answer: speech (vosk / pocketsphinx), face and attention
(mediapipe), scoring with evidence, and the interview report. Pure Python on numpy frames
and PCM chunks: it never imports Qt, opens a device, or logs what a candidate said."""

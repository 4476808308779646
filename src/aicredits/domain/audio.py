"""Formats speech can be returned in, and their content types."""

SPEECH_CONTENT_TYPES = {
    "mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}

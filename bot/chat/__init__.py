"""Chat: the commands, the inbox sources that feed them, the digest and charts."""

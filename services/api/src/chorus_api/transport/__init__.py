"""Transport and fast paths: the request body cap, pool admission and the session-less Reader."""

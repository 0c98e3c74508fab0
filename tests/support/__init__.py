"""What the tests share: real servers on loopback, a site run through the CLI, feeds, mail,
editions, `trnews serve` and Chromium. Fixtures that use them are declared in conftest.py; a
test file imports helpers from here, never from another test file."""

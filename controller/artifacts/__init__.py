"""Stage artifacts: content-addressed files uploaded by agents and restored along `needs`."""

"""Runtime pieces every Scribe service shares: settings, logging, topology, messaging."""

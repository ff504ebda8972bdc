"""The live big-screen dashboard: `flashsale dashboard`, also started by `flashsale demo`."""

"""The Qt user interface: thin widgets over ich_viewer.core (the only Qt code in the product)."""

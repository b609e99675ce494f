"""Packages the factory tests walk (imported only through the factories)."""

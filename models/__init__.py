"""Database tables and the SQL that reads and writes them, shared by web and workers."""

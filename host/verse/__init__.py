"""verse"""

"""One robomesh robot (same launch description as robot.launch.xml and robot.launch.yaml).

    ros2 launch robomesh robot.launch.py robot:=r1
    ros2 launch robomesh robot.launch.py robot:=r1 namespace:=/r1 config:=/path/to/r1.yaml
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    robot = LaunchConfiguration('robot')
    namespace = LaunchConfiguration('namespace')
    config = LaunchConfiguration('config')
    return LaunchDescription([
        DeclareLaunchArgument(
            'robot', default_value='robot',
            description='robot name: the node name and the robot_name parameter'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='ROS namespace for the node and its topics (empty: none)'),
        DeclareLaunchArgument(
            'config',
            default_value=PathJoinSubstitution([FindPackageShare('robomesh'), 'config', 'robot.yaml']),
            description='YAML config (a ROS 2 parameters file)'),
        Node(
            package='robomesh',
            executable='robomesh_node',
            name=robot,
            namespace=namespace,
            output='screen',
            # The config file is both the config_file parameter and a parameters file.
            parameters=[{'robot_name': robot, 'config_file': config}, config],
        ),
    ])
